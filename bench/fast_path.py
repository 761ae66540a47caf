"""Decide the int8 default on real speech: ``openkws eval streams`` on the float model and its int8
variant, same streams, same arguments; the int8 graphs may become the default only if FRR at
0.5 FA/h per keyword is at most 1 point worse than float for every proxy kind (text and TTS).

    python -m bench.fast_path --model src/openkws/models/default --out runs/fast_path
    python -m bench.fast_path --int8 runs/quant/default-int8 -- --condition quiet --tts-minutes 10

Without ``--int8`` the variant is built first (``openkws export quantize``: static QDQ,
speech embedding and acoustic frames, calibrated on the synthetic *training* split). Arguments after
``--`` go to both ``openkws eval streams`` runs. Each run has its own output and cache folder (the
cached per-stream events belong to one model). Prints the comparison table and writes
``fast_path.json``; rerun on whatever model is ``models/default`` when the default changes.

The VAD half of the decision (issue 24, item 4) needs ``openkws eval streams`` to decode with the
voice-activity gate, which it does not do yet.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BUDGET = "0.5"  # FA/h per keyword
MAX_WORSE_POINTS = 1.0


def log(msg: str) -> None:
    print(msg, flush=True)


def quantize(model: Path, out: Path, manifest: Path) -> None:
    cmd = ["openkws", "export", "quantize", "--model", str(model), "--out", str(out),
           "--roles", "speech_embedding,acoustic_frames", "--method", "static", "--manifest", str(manifest)]  # fmt: skip
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def eval_streams(model: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = ["openkws", "eval", "streams", "--model", str(model), "--out", str(out / "eval"),
           "--cache", str(out / "cache"), *extra]  # fmt: skip
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    report: dict[str, Any] = json.loads((out / "eval" / "streams.json").read_text())
    return report


def frr_at(report: dict[str, Any], budget: str = BUDGET) -> dict[str, float]:
    """FRR at ``budget`` FA/h per keyword for every openkws system (proxy kind) of a report."""
    return {name: float(s["targets"][budget]["frr"]) for name, s in report["systems"].items()}


def compare(float_frr: dict[str, float], int8_frr: dict[str, float]) -> tuple[list[dict[str, Any]], bool]:
    """Rows (system, float, int8, points worse) and whether int8 passes for every system.

    Example:
        >>> rows, ok = compare({"openkws-text": 0.70, "openkws-tts": 0.60}, {"openkws-text": 0.705, "openkws-tts": 0.62})
        >>> [r["worse_points"] for r in rows], ok
        ([0.5, 2.0], False)
    """
    rows = []
    for name in sorted(set(float_frr) & set(int8_frr)):
        worse = round(100.0 * (int8_frr[name] - float_frr[name]), 2)
        rows.append({"system": name, "float": float_frr[name], "int8": int8_frr[name], "worse_points": worse})
    return rows, bool(rows) and all(r["worse_points"] <= MAX_WORSE_POINTS for r in rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("src/openkws/models/default"))
    ap.add_argument(
        "--int8", type=Path, default=None, help="int8 variant (default: built into OUT/int8-model)"
    )
    ap.add_argument(
        "--manifest", type=Path, default=Path("data/synth/manifest.csv"), help="calibration (TTS)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/fast_path"))
    args = ap.parse_args(argv)
    if not (args.model / "model.json").is_file():
        ap.error(f"no model.json in {args.model}")
    int8 = args.int8 or args.out / "int8-model"
    if not (int8 / "model.json").is_file():
        if args.int8 is not None:
            ap.error(f"no model.json in {args.int8}")
        quantize(args.model, int8, args.manifest)
    f = frr_at(eval_streams(args.model, args.out / "float", extra))
    q = frr_at(eval_streams(int8, args.out / "int8", extra))
    rows, ok = compare(f, q)
    log(f"| system | FRR @ {BUDGET} FA/h float | int8 | int8 worse by (points) |\n| --- | --- | --- | --- |")
    for r in rows:
        log(
            f"| {r['system']} | {100 * r['float']:.1f}% | {100 * r['int8']:.1f}% | {r['worse_points']:+.2f} |"
        )
    log(f"int8 within {MAX_WORSE_POINTS:g} point of float for every proxy kind: {'yes' if ok else 'no'}")
    doc = {"model": str(args.model), "int8": str(int8), "extra_args": extra, "rows": rows, "int8_passes": ok}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fast_path.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

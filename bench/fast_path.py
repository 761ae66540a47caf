"""Decide the fast-path defaults (issue 24, item 4) on synthetic speech: ``openkws eval streams`` on the
float model, its int8 variant and float + the VAD gate, same streams, same arguments.

    python -m bench.fast_path --out runs/fast_path                   # the decision (synthetic only)
    python -m bench.fast_path --out runs/fast_path --asterisk        # + Asterisk rows, reported only

The rule (docs/RESULTS.md, "Issue 24"): a row may become the default only if its FRR at 0.5 FA/h per
keyword is at most 1 point worse than float's for ``openkws-text@bank`` and ``openkws-tts-white@bank``
(text and the shipped whitened TTS proxies at the service's bank-calibrated sensitivity), pooled over
the conditions. The streams are the 315 keyword texts spoken by the 4 held-out TTS voices
(``bench.synth_keywords``; rendered into ``runs/synth_kw`` if missing) with TTS and music negatives.
Recorded speech (the Asterisk manifest, ``--asterisk``) is decoded for float and int8 and reported
beside the decision, never used by it.

The int8 variant (``--int8 DIR``, else built into ``OUT/int8-model``) is ``openkws export quantize``
(static QDQ of the speech embedding and the acoustic frames, calibrated on training-split clips of the
synthetic training corpus) plus its **own** calibration bank (``openkws eval bank``) and whitening
(``openkws export whiten``, the float model's modes): the float model's files hold the float graphs'
embeddings, so ``@bank`` and ``tts-white`` would otherwise not mean the same for both rows. Arguments
after ``--`` go to every ``openkws eval streams`` run. All runs share one cache (``--cache``): built
audio is reused, and per-stream events are keyed by the model's graphs and the VAD option.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUDGET = "0.5"  # FA/h per keyword
MAX_WORSE_POINTS = 1.0
DECIDING = ("openkws-text@bank", "openkws-tts-white@bank")
ROWS = {  # row -> (model, vad)
    "float": ("float", False),
    "int8": ("int8", False),
    "float+vad": ("float", True),
    "int8+vad": ("int8", True),
}
SYNTH_ARGS = ["--negatives", "tts", "--negatives", "music"]
PROXY_ARGS = ["--proxy", "text", "--proxy", "tts-white", "--bank-sweep"]
DEV_MANIFEST = Path("data/eval/asterisk/manifest.csv")


def log(msg: str) -> None:
    print(msg, flush=True)


def sh(cmd: list[str]) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def calibration_manifest(given: Path | None, out: Path, clips: int) -> Path:
    """Training-split TTS clips to calibrate static quantisation on: ``given``, the full synthetic
    corpus if it is on disk, else a prefix of the ``small`` recipe rendered into ``out``."""
    if given is not None:
        return given
    if Path("data/synth/manifest.csv").is_file():
        return Path("data/synth/manifest.csv")
    dest = out / "calibration-clips"
    sh(["openkws", "data", "synth", "--recipe", "small", "--num-clips", str(clips), "--out", str(dest),
        "--workers", "1", "--no-progress"])  # fmt: skip
    return dest / "manifest.csv"


def whitening_modes(model: Path) -> list[str]:
    from openkws.engine.whitening import WHITENING_FILE, load_whitening_modes

    path = model / WHITENING_FILE
    return list(load_whitening_modes(path)) if path.is_file() else []


def ensure_int8(model: Path, int8: Path, calibration: Path | None, clips: int, out: Path) -> None:
    """Quantise (if ``int8`` has no model.json), then give it its own bank and the float's whitening modes."""
    if not (int8 / "model.json").is_file():
        manifest = calibration_manifest(calibration, out, clips)
        sh(["openkws", "export", "quantize", "--model", str(model), "--out", str(int8),
            "--roles", "speech_embedding,acoustic_frames", "--method", "static", "--manifest", str(manifest)])  # fmt: skip
    if (model / "calibration_bank.npz").is_file() and not (int8 / "calibration_bank.npz").is_file():
        sh(["openkws", "eval", "bank", "--model", str(int8)])  # the export's defaults (14/3/3 min, stride 4)
    modes = whitening_modes(model)
    if modes and sorted(whitening_modes(int8)) != sorted(modes):
        sh(["openkws", "export", "whiten", "--model", str(int8), *[a for m in modes for a in ("--mode", m)]])


def synth_manifest(path: Path) -> Path:
    if not path.is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench.synth_keywords import render

        log(f"rendering the held-out-voice keyword set into {path.parent}")
        render(DEV_MANIFEST, path.parent)
    return path


def eval_streams(
    model: Path, vad: bool, manifest: Path, out: Path, cache: Path, args: list[str]
) -> dict[str, Any]:
    cmd = ["openkws", "eval", "streams", "--model", str(model), "--manifest", str(manifest), "--out", str(out),
           "--cache", str(cache), *PROXY_ARGS, *(["--vad"] if vad else []), *args]  # fmt: skip
    t0 = time.perf_counter()
    sh(cmd)
    report: dict[str, Any] = json.loads((out / "streams.json").read_text())
    report["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    report["command"] = " ".join(cmd)
    return report


def frr(report: dict[str, Any], budget: str = BUDGET) -> dict[str, dict[str, float]]:
    """``{system: {"all": FRR, <condition>: FRR}}`` at ``budget`` FA/h per keyword."""
    out = {}
    for name, s in report["systems"].items():
        t = s["targets"][budget]
        out[name] = {"all": float(t["frr"]), **{c: float(v) for c, v in t["by_condition"].items()}}
    return out


def compare(
    base: dict[str, float], row: dict[str, float], systems: tuple[str, ...] | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Per system (``systems``, default those in both): (base, row, points worse), pooled; the row
    passes if every system is there and none is more than 1 point worse.

    Example:
        >>> rows, ok = compare({"a": 0.70, "b": 0.60}, {"a": 0.705, "b": 0.62})
        >>> [r["worse_points"] for r in rows], ok
        ([0.5, 2.0], False)
        >>> compare({"a": 0.5}, {"b": 0.5}, ("a",))[1]  # a system missing from a row never passes
        False
    """
    names = tuple(sorted(set(base) & set(row))) if systems is None else systems
    worse = {n: round(100.0 * (row[n] - base[n]), 2) for n in names if n in base and n in row}
    rows = [{"system": n, "float": base[n], "row": row[n], "worse_points": w} for n, w in worse.items()]
    return rows, bool(worse) and len(worse) == len(names) and max(worse.values()) <= MAX_WORSE_POINTS


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: one line per (row, system), FRR at 0.5 FA/h pooled and per condition."""
    conds: list[str] = []
    for r in results.values():
        conds += [c for c in r["conditions"] if c not in conds]
    lines = [
        f"| row | system | FRR @ {BUDGET} FA/h pooled | vs float (points) | " + " | ".join(conds) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in conds) + " |",
    ]
    base = frr(results["float"]) if "float" in results else {}
    for row, rep in results.items():
        for name, f in frr(rep).items():
            if name not in DECIDING:
                continue
            d = f"{100 * (f['all'] - base[name]['all']):+.1f}" if name in base and row != "float" else ""
            cells = " | ".join(f"{100 * f[c]:.1f}%" if c in f else "n/a" for c in conds)
            lines.append(f"| {row} | {name} | {100 * f['all']:.1f}% | {d} | {cells} |")
    return lines


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
    ap.add_argument("--calibration", type=Path, default=None,
                    help="synthetic training manifest for static quantisation (default: data/synth, else "
                         "a prefix of `openkws data synth --recipe small` rendered into OUT)")  # fmt: skip
    ap.add_argument("--calibration-clips", type=int, default=300)
    ap.add_argument("--manifest", type=Path, default=Path("runs/synth_kw/manifest.csv"),
                    help="held-out-voice keyword set (rendered by bench.synth_keywords if missing)")  # fmt: skip
    ap.add_argument("--rows", default="float,int8,float+vad", help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument(
        "--asterisk", action="store_true", help="also float and int8 on recorded speech (reported only)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/fast_path"))
    ap.add_argument("--cache", type=Path, default=None, help="shared eval-streams cache (default OUT/cache)")
    args = ap.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        ap.error(f"--rows {args.rows!r}: choose from {', '.join(ROWS)}")
    if args.calibration is not None and not args.calibration.is_file():
        ap.error(
            f"--calibration {args.calibration}: no such manifest (a synthetic corpus, `openkws data synth`)"
        )
    if args.calibration_clips < 1:
        ap.error("--calibration-clips must be >= 1")
    if not (args.model / "model.json").is_file():
        ap.error(f"no model.json in {args.model}")
    if args.int8 is not None and not (args.int8 / "model.json").is_file():
        ap.error(f"no model.json in {args.int8}")
    if "float" not in rows:
        rows.insert(0, "float")  # the baseline every row is compared with
    int8 = args.int8 or args.out / "int8-model"
    if any(ROWS[r][0] == "int8" for r in rows) or args.asterisk:
        ensure_int8(args.model, int8, args.calibration, args.calibration_clips, args.out)
    models = {"float": args.model, "int8": int8}
    cache = args.cache or args.out / "cache"
    manifest = synth_manifest(args.manifest)
    results: dict[str, dict[str, Any]] = {}
    for r in rows:
        model, vad = ROWS[r]
        results[r] = eval_streams(
            models[model], vad, manifest, args.out / r / "synth", cache, SYNTH_ARGS + extra
        )
    decision = {}
    base = {n: f["all"] for n, f in frr(results["float"]).items()}
    for r in rows:
        if r != "float":
            cmp_rows, ok = compare(base, {n: f["all"] for n, f in frr(results[r]).items()}, DECIDING)
            decision[r] = {"rows": cmp_rows, "passes": ok}
    reported: dict[str, dict[str, Any]] = {}
    if args.asterisk:
        for r in ("float", "int8"):
            reported[r] = eval_streams(
                models[r], False, DEV_MANIFEST, args.out / r / "asterisk", cache, extra
            )
    log("\nSynthetic held-out voices (decides):")
    log("\n".join(table(results)))
    for r, d in decision.items():
        log(f"{r}: within {MAX_WORSE_POINTS:g} point of float for text@bank and tts-white@bank: "
            f"{'yes' if d['passes'] else 'no'}")  # fmt: skip
    if reported:
        log("\nAsterisk recorded speech (reported, never used to choose):")
        log("\n".join(table(reported)))
    summary = {
        "model": str(args.model),
        "int8": str(int8),
        "manifest": str(manifest),
        "extra_args": extra,
        "rule": f"FRR at {BUDGET} FA/h per keyword, pooled, at most {MAX_WORSE_POINTS:g} point worse than float "
        f"for {', '.join(DECIDING)} (docs/RESULTS.md, Issue 24)",
        "synthetic": {r: _brief(rep) for r, rep in results.items()},
        "decision": decision,
        "asterisk_reported": {r: _brief(rep) for r, rep in reported.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fast_path.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _brief(rep: dict[str, Any]) -> dict[str, Any]:
    return {"command": rep["command"], "wall_s": rep["bench_wall_s"], "vad_share": rep.get("vad"),
            "frr_at_0.5": {n: f for n, f in frr(rep).items() if n in DECIDING}}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

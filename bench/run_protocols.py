"""The protocols of one benchmark run (:mod:`bench.run_all`): streaming detection and pairs (systems in
separate processes), speed (one system at a time, pinned to a core), and the service and soak
benchmarks (their own commands, in subprocesses). Each writes its JSON (and plots) into ``out``."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench import datasets
from bench.run_setup import load_data

log = logging.getLogger("bench")
COST_ORDER = ["efficientword", "pocketsphinx", "openwakeword", "openkws-tts", "openkws"]
# the data layer's pairs dev sets: held-out synthetic clips and the Asterisk real-speech prompts
# (manifest, split): unseen words by held-out voices from the synthetic corpus, and real speech
PAIRS_MANIFESTS: dict[str, tuple[Path, str | None]] = {
    "synthetic-test": (Path("data/synth/manifest.csv"), "test"),
    "asterisk-real": (Path("data/eval/asterisk/manifest.csv"), None),
}


def streaming_protocol(
    args: argparse.Namespace, systems: list[str], options: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Every system on the evaluation streams (``args.jobs`` processes at a time): JSON and DET plots
    in ``out``. Returns the description of the data."""
    data = load_data(args)
    log.info("streaming protocol: %s", data.describe())
    results: dict[str, Any] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        # the costliest first, so two workers finish together
        order = sorted(systems, key=lambda s: COST_ORDER.index(s) if s in COST_ORDER else len(COST_ORDER))
        futures = {s: pool.submit(_run_streaming, s, data, options) for s in order}
        for s, f in futures.items():
            results[s] = f.result()
            (out / f"streaming_{s}.json").write_text(json.dumps(results[s]) + "\n")
    from bench.protocol_streaming import plot_det

    for name, title in (
        ("a", "set (a): openWakeWord's five words"),
        ("b", "set (b): unseen words and phrases"),
    ):
        plot_det(results, name, out / f"det_set_{name}.png", title)
    return data.describe()


def _pairs_manifests(args: argparse.Namespace) -> dict[str, tuple[Path, str | None]]:
    found: dict[str, tuple[Path, str | None]] = {}
    for item in args.pairs_manifest:
        name, _, rest = item.partition("=")
        path, _, split = rest.partition(":")
        if not path:
            raise SystemExit(f"--pairs-manifest wants NAME=CSV[:SPLIT], got {item!r}")
        found[name] = (Path(path), split or None)
    if found:
        return found
    for name, (path, split) in PAIRS_MANIFESTS.items():
        if path.is_file():
            found[name] = (path, split)
    if not found:
        if not args.quick:
            raise SystemExit(f"no pairs manifests found ({', '.join(str(p) for p, _ in PAIRS_MANIFESTS.values())}); "
                             "build them with the data layer or pass --pairs-manifest NAME=CSV")  # fmt: skip
        from bench.pairs import smoke_manifest

        pos, _ = datasets.smoke_voices(2)
        found["smoke"] = smoke_manifest(
            Path(args.cache) / "pairs_smoke", list(datasets.SET_A + datasets.SMOKE_SET_B), pos
        )
    return found


def pairs_protocol(
    args: argparse.Namespace, systems: list[str], options: dict[str, Any], out: Path
) -> dict[str, Any]:
    from bench.pairs import PAIR_SYSTEMS, plot_pairs

    manifests = _pairs_manifests(args)
    max_clips = args.pairs_max_clips or (24 if args.quick else 400)
    _, templ = datasets.smoke_voices(2)
    summary: dict[str, Any] = {}
    ctx = get_context("spawn")
    for name, (manifest, split) in manifests.items():
        res: dict[str, Any] = {}
        order = sorted(
            (s for s in systems if s in PAIR_SYSTEMS),
            key=lambda s: COST_ORDER.index(s) if s in COST_ORDER else 99,
        )
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
            futs = {s: pool.submit(_run_pairs, s, manifest, split, options, templ, max_clips) for s in order}
            for s, f in futs.items():
                try:
                    res[s] = f.result()
                except Exception as e:  # one system failing must not lose the others' figures
                    log.exception("pairs %s on %s failed", s, name)
                    res[s] = {"error": f"{type(e).__name__}: {e}"}
        doc = {"name": name, "manifest": str(manifest), "split": split, "systems": res}
        (out / f"pairs_{name}.json").write_text(json.dumps(doc) + "\n")
        plot_pairs(
            {s: r for s, r in res.items() if "scores" in r}, out / f"pairs_{name}.png", f"pairs: {name}"
        )
        summary[name] = {s: r.get("metrics", r.get("error")) for s, r in res.items()}
    return summary


def speed_protocol(args: argparse.Namespace, systems: list[str], model_dir: str, out: Path) -> dict[str, Any]:
    from bench.speed import run_speed

    data = load_data(args)
    neg = next((s for s in data.streams if s.kind == "negative"), data.streams[0])
    seconds = args.speed_seconds or (15.0 if args.quick else 30.0)
    reps = 1 if args.quick else 3
    res = run_speed(systems, neg.path, seconds, reps, model_dir, args.quick)
    doc = {"audio": str(neg.path), "audio_s": seconds, "reps": reps, "systems": res}
    (out / "speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {s: [(r.get("keywords"), r.get("rtf")) for r in rows] for s, rows in res.items()}


def service_protocol(args: argparse.Namespace, model_dir: str, out: Path) -> dict[str, Any]:
    """Run the service engineer's ``bench/service_bench.py`` and keep its JSON output."""
    target = out / "service.json"
    script = Path("bench/service_bench.py")
    if not script.is_file():
        doc = {"status": "bench/service_bench.py not present yet"}
    else:
        cmd = [
            sys.executable,
            "-m",
            "bench.service_bench",
            "--model",
            model_dir,
            "--out",
            str(out / "service_raw.json"),
        ]
        if args.quick:
            cmd.append("--quick")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        raw = out / "service_raw.json"
        if p.returncode == 0 and raw.is_file():
            doc = {"status": "ok", "command": " ".join(cmd[1:]), "result": json.loads(raw.read_text())}
        else:
            doc = {
                "status": f"failed (exit {p.returncode})",
                "command": " ".join(cmd[1:]),
                "stderr": p.stderr[-2000:],
            }
    target.write_text(json.dumps(doc, indent=2) + "\n")
    return {"status": doc["status"]}


def soak_protocol(args: argparse.Namespace, model_dir: str, out: Path) -> dict[str, Any]:
    """``bench/soak.py``: 10 minutes (1 with --quick) of real-time streams and keyword churn."""
    minutes = "1" if args.quick else "10"
    cmd = [
        sys.executable,
        "-m",
        "bench.soak",
        "--minutes",
        minutes,
        "--model",
        model_dir,
        "--out",
        str(out / "soak.json"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if not (out / "soak.json").is_file():
        return {"status": f"failed (exit {p.returncode})", "stderr": p.stderr[-2000:]}
    res = json.loads((out / "soak.json").read_text())
    keys = ("errors", "detections_lost", "detections_expected", "latency_ms", "rss_growth_pct")
    return {"status": "ok" if p.returncode == 0 else "targets missed", **{k: res.get(k) for k in keys}}


def _run_pairs(
    system: str, manifest: Path, split: str | None, options: dict[str, Any], templ: list[str], max_clips: int
) -> dict[str, Any]:
    from bench.pairs import run_pairs

    return run_pairs(system, manifest, options, templ, max_clips, split=split)


def _run_streaming(system: str, data: datasets.EvalData, options: dict[str, Any]) -> dict[str, Any]:
    from bench.protocol_streaming import run_system

    return run_system(system, data, options)

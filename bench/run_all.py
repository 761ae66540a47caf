"""``python -m bench.run_all``: every protocol, every system, one run; JSON + PNG in ``bench/out``,
tables regenerated in ``docs/BENCHMARKS.md``.

    python -m bench.run_all            # full benchmark (needs the data layer's evaluation sets)
    python -m bench.run_all --quick    # a few minutes on a small smoke set, for development

Systems run in separate processes (``--jobs`` at a time, default 1): each loads only its own
models, and its peak RSS is its own. The speed protocol always runs alone, one system at a time,
pinned to one CPU core.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench import datasets
from bench.detectors import DETECTORS

log = logging.getLogger("bench")
OUT = Path("bench/out")
DOC = Path("docs/BENCHMARKS.md")
DATA_LAYER_DIR = Path("data/eval/streams")
DEFAULT_MODEL = Path("models/default")


def _model_dir(arg: str | None, cache: Path) -> tuple[Path, bool]:
    """The openkws model to benchmark, and whether it is a stand-in untrained export."""
    if arg:
        return Path(arg), False
    if (DEFAULT_MODEL / "model.json").is_file():
        return DEFAULT_MODEL, False
    target = cache / "untrained-model"
    if not (target / "model.json").is_file():
        from training.export import export_untrained

        log.warning(
            "no trained model in %s: exporting an untrained one to %s (harness check only)",
            DEFAULT_MODEL,
            target,
        )
        export_untrained(target)
    return target, True


def machine() -> dict[str, Any]:
    import os

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_data(args: argparse.Namespace) -> datasets.EvalData:
    if not args.smoke:
        data = datasets.load_data_layer(Path(args.data))
        if data is not None:
            return data
        if not args.quick:
            raise SystemExit(
                f"evaluation streams not found in {args.data} (manifest.json + ground_truth.csv). "
                "Build them with the data layer (`make data`), pass --data DIR, or use --quick / --smoke "
                "for a small self-built smoke set (never for published figures)."
            )
        log.warning("data layer streams not found in %s: building the smoke set", args.data)
    minutes = 2.0 if args.quick else 10.0
    return datasets.build_smoke_set(Path(args.cache) / "smoke", negative_minutes=minutes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="small data, few repetitions: minutes, for development"
    )
    p.add_argument(
        "--smoke", action="store_true", help="use the self-built smoke set even if the data layer's exists"
    )
    p.add_argument("--systems", default=",".join(DETECTORS), help=f"comma list from {sorted(DETECTORS)}")
    p.add_argument("--protocols", default="streaming,pairs,speed,service", help="comma list")
    p.add_argument(
        "--model", default=None, help="openkws model dir (default models/default, else an untrained export)"
    )
    p.add_argument("--data", default=str(DATA_LAYER_DIR), help="data layer evaluation streams dir")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--cache", default=None, help="cache dir (default OUT/cache)")
    p.add_argument("--jobs", type=int, default=1, help="systems scored in parallel in the accuracy protocols")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.cache = args.cache or str(out / "cache")
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in DETECTORS:
            raise SystemExit(f"unknown system {s!r}; choose from {sorted(DETECTORS)}")
    protocols = {s.strip() for s in args.protocols.split(",") if s.strip()}
    t0 = time.perf_counter()
    model_dir, untrained = _model_dir(args.model, Path(args.cache))
    options: dict[str, Any] = {"openkws": {"model_dir": str(model_dir)}}
    run: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_rev(),
        "command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine(),
        "openkws_model": {"dir": str(model_dir), "untrained": untrained},
        "systems": systems,
    }

    if "streaming" in protocols:
        data = load_data(args)
        run["data"] = data.describe()
        log.info("streaming protocol: %s", data.describe())
        results: dict[str, Any] = {}
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
            futures = {s: pool.submit(_run_streaming, s, data, options) for s in systems}
            for s, f in futures.items():
                results[s] = f.result()
                (out / f"streaming_{s}.json").write_text(json.dumps(results[s]) + "\n")
        from bench.protocol_streaming import plot_det

        for name, title in (
            ("a", "set (a): openWakeWord's five words"),
            ("b", "set (b): unseen words and phrases"),
        ):
            plot_det(results, name, out / f"det_set_{name}.png", title)

    run["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_docs:
        from bench.report import write_report

        write_report(out, DOC)
    log.info("done in %.0f s; results in %s", run["wall_s"], out)
    return 0


def _run_streaming(system: str, data: datasets.EvalData, options: dict[str, Any]) -> dict[str, Any]:
    from bench.protocol_streaming import run_system

    return run_system(system, data, options)


if __name__ == "__main__":
    raise SystemExit(main())

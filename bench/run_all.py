"""``python -m bench.run_all``: every protocol, every system, one run; JSON + PNG in ``bench/out``,
tables regenerated in ``docs/BENCHMARKS.md``.

    python -m bench.run_all            # full benchmark (needs the data layer's evaluation sets)
    python -m bench.run_all --quick    # a few minutes on a small smoke set, for development

Systems run in separate processes (``--jobs`` at a time, default 1): each loads only its own
models, and its peak RSS is its own. The speed protocol always runs alone, one system at a time,
pinned to one CPU core.

The protocols run from :mod:`bench.run_protocols`; the model, machine and data from :mod:`bench.run_setup`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.detectors import DETECTORS
from bench.report import write_report
from bench.run_protocols import (
    pairs_protocol,
    service_protocol,
    soak_protocol,
    speed_protocol,
    streaming_protocol,
)
from bench.run_setup import DATA_ROOTS, git_rev, machine, model_dir

log = logging.getLogger("bench")
OUT = Path("bench/out")
DOC = Path("docs/BENCHMARKS.md")


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
    p.add_argument("--protocols", default="streaming,pairs,speed,service,soak", help="comma list")
    p.add_argument(
        "--model", default=None, help="openkws model dir (default models/default, else an untrained export)"
    )
    p.add_argument(
        "--data",
        default=None,
        help=f"data layer evaluation dir (default: first of {[str(d) for d in DATA_ROOTS]})",
    )
    p.add_argument(
        "--negatives",
        default="noisy",
        choices=["clean", "noisy", "both"],
        help="negative audio condition(s) to score (the data layer renders the same speech clean and noisy)",
    )
    p.add_argument(
        "--set-a-streams",
        type=int,
        default=1,
        metavar="N",
        help="extra set (a) streams per (background, SNR) built with the data layer's builder (0: none)",
    )
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--cache", default=None, help="cache dir (default OUT/cache)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="systems scored in parallel in the accuracy protocols (default 2; --quick 1). Timings are never parallel",
    )
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    p.add_argument(
        "--pairs-manifest",
        action="append",
        default=[],
        metavar="NAME=CSV",
        help="pairs clip manifest (path,text[,start,end]); repeatable. Default: the data layer's dev sets",
    )
    p.add_argument(
        "--pairs-max-clips",
        type=int,
        default=None,
        help="subsample clips per manifest (default 400; quick 24)",
    )
    p.add_argument(
        "--speed-seconds", type=float, default=None, help="audio per timing (default 60; quick 15)"
    )
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # worker processes: one thread per math library, as the service runs
    if args.jobs is None:
        args.jobs = 1 if args.quick else 2
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
    model, untrained = model_dir(args.model, Path(args.cache))
    options: dict[str, Any] = {s: {"model_dir": str(model)} for s in ("openkws", "openkws-tts")}
    run: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_rev(),
        "command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine(),
        "openkws_model": {"dir": str(model), "untrained": untrained},
        "systems": systems,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }

    if "streaming" in protocols:
        run["data"] = streaming_protocol(args, systems, options, out)

    if "pairs" in protocols:
        run["pairs"] = pairs_protocol(args, systems, options, out)

    if "speed" in protocols:
        run["speed"] = speed_protocol(args, systems, str(model), out)

    if "service" in protocols:
        run["service"] = service_protocol(args, str(model), out)

    if "soak" in protocols:
        run["soak"] = soak_protocol(args, str(model), out)

    run["wall_s"] = round(time.perf_counter() - t0, 1)
    run["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_docs:
        write_report(out, DOC)
    log.info("done in %.0f s; results in %s", run["wall_s"], out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

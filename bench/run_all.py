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
import os
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
DATA_ROOTS = [Path("data/eval"), Path("data/evalsets"), Path("data")]
DEFAULT_MODEL = Path("src/openkws/models/default")
COST_ORDER = ["efficientword", "pocketsphinx", "openwakeword", "openkws-tts", "openkws"]
# the data layer's pairs dev sets: held-out synthetic clips and the Asterisk real-speech prompts
# (manifest, split): unseen words by held-out voices from the synthetic corpus, and real speech
PAIRS_MANIFESTS: dict[str, tuple[Path, str | None]] = {
    "synthetic-test": (Path("data/synth/manifest.csv"), "test"),
    "asterisk-real": (Path("data/eval/asterisk/manifest.csv"), None),
}


def _model_dir(arg: str | None, cache: Path) -> tuple[Path, bool]:
    """The openkws model to benchmark, and whether it is an untrained stand-in.

    Without a trained ``models/default``, an untrained model of the default (full-size) architecture
    is exported (as ``bench/service_bench.py`` does, into the same cache): its scores are meaningless
    but its compute is the real model's, so a harness check still exercises realistic costs.
    """
    if arg:
        path = Path(arg)
    elif (DEFAULT_MODEL / "model.json").is_file():
        path = DEFAULT_MODEL
    else:
        path = cache / "untrained-full"
        if not (path / "model.json").is_file():
            from openkws.training.config import ModelConfig
            from openkws.training.export import export_model
            from openkws.training.nets.kws_model import build_model

            log.warning(
                "no trained model in %s: exporting an untrained full-size one to %s (harness check only)",
                DEFAULT_MODEL,
                path,
            )
            export_model(build_model(ModelConfig()), path, "untrained-full-size", check=False)
    version = str(json.loads((path / "model.json").read_text()).get("model_version", ""))
    return path, version.startswith("untrained")


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
        candidates = [Path(args.data)] if args.data else DATA_ROOTS
        root = datasets.find_data_root(candidates)
        if root is not None:
            conditions = datasets.NEGATIVE_CONDITIONS if args.negatives == "both" else (args.negatives,)
            extra = []
            if args.set_a_streams > 0:
                extra.append(
                    datasets.build_set_a_streams(
                        Path(args.cache) / "set_a_streams", per_condition=args.set_a_streams
                    )
                )
            data = datasets.load_data_layer(root, conditions, extra)
            assert data is not None
            return data
        if not args.quick:
            raise SystemExit(
                f"evaluation streams not found in {', '.join(map(str, candidates))} (negatives/ and streams/ manifests). "
                "Build them with the data layer (`make data`), pass --data DIR, or use --quick / --smoke "
                "for a small self-built smoke set (never for published figures)."
            )
        log.warning("data layer evaluation sets not found: building the smoke set")
    minutes = 1.5 if args.quick else 10.0
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
    model_dir, untrained = _model_dir(args.model, Path(args.cache))
    options: dict[str, Any] = {s: {"model_dir": str(model_dir)} for s in ("openkws", "openkws-tts")}
    run: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_rev(),
        "command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine(),
        "openkws_model": {"dir": str(model_dir), "untrained": untrained},
        "systems": systems,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }

    if "streaming" in protocols:
        data = load_data(args)
        run["data"] = data.describe()
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

    if "pairs" in protocols:
        run["pairs"] = _pairs(args, systems, options, out)

    if "speed" in protocols:
        run["speed"] = _speed(args, systems, str(model_dir), out)

    if "service" in protocols:
        run["service"] = _service(args, str(model_dir), out)

    if "soak" in protocols:
        run["soak"] = _soak(args, str(model_dir), out)

    run["wall_s"] = round(time.perf_counter() - t0, 1)
    run["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_docs:
        from bench.report import write_report

        write_report(out, DOC)
    log.info("done in %.0f s; results in %s", run["wall_s"], out)
    return 0


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


def _pairs(
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


def _speed(args: argparse.Namespace, systems: list[str], model_dir: str, out: Path) -> dict[str, Any]:
    from bench.speed import run_speed

    data = load_data(args)
    neg = next((s for s in data.streams if s.kind == "negative"), data.streams[0])
    seconds = args.speed_seconds or (15.0 if args.quick else 30.0)
    reps = 1 if args.quick else 3
    res = run_speed(systems, neg.path, seconds, reps, model_dir, args.quick)
    doc = {"audio": str(neg.path), "audio_s": seconds, "reps": reps, "systems": res}
    (out / "speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {s: [(r.get("keywords"), r.get("rtf")) for r in rows] for s, rows in res.items()}


def _service(args: argparse.Namespace, model_dir: str, out: Path) -> dict[str, Any]:
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


def _soak(args: argparse.Namespace, model_dir: str, out: Path) -> dict[str, Any]:
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


if __name__ == "__main__":
    raise SystemExit(main())

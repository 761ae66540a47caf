"""What one benchmark run stands on (:mod:`bench.run_all`): the openkws model, the machine, the git
revision, and the evaluation streams (the data layer's, or a small self-built smoke set)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench import datasets

log = logging.getLogger("bench")
DATA_ROOTS = [Path("data/eval"), Path("data/evalsets"), Path("data")]
DEFAULT_MODEL = Path("src/openkws/models/default")


def model_dir(arg: str | None, cache: Path) -> tuple[Path, bool]:
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

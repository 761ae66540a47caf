"""Enrollment time per proxy, with and without the expected hit rate (issues 23, 26), through the library.

``KeywordSpotter.add_keyword`` runs the server's enrollment steps (G2P, text encoder, TTS renditions
for ``proxy: tts``/``both``, whitened when the model ships ``whitening.npz``, threshold from the
calibration bank) in-process; ``hit_rate=False`` is the
enrollment before the expected hit rate existed. Prints p50/p95 of wall time and of process CPU
time (with the TTS subprocesses; one thread; a busy machine inflates it far less than wall time) per configuration; quote the
machine's load with the figures.

Run: ``python -m bench.enroll_time --out runs/bench/enroll_time.json``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openkws.kws import KeywordSpotter

TEXTS = ("hey jarvis", "computer", "turn on the lights", "stop", "play music", "okay nova",
         "open the garage door", "good morning", "next song", "lights off")  # fmt: skip
CONFIGS = {  # name -> (proxy, hit_rate)
    "text, no hit rate (before)": ("text", False),
    "text, hit rate (after)": ("text", True),
    "tts, no hit rate (before)": ("tts", False),
    "tts, hit rate (after)": ("tts", True),
    "both, no hit rate": ("both", False),
    "both, hit rate": ("both", True),
}


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (espeak-ng and flite run as those)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/enroll_time.json"))
    ap.add_argument("--keywords", type=int, default=len(TEXTS), help="how many of the texts to enroll")
    args = ap.parse_args(argv)
    texts = TEXTS[: args.keywords]
    kws = KeywordSpotter()
    kws.add_keyword("warm up", hit_rate=True)
    report: dict[str, object] = {"load_before": os.getloadavg()}
    for name, (proxy, hit_rate) in CONFIGS.items():
        ms, cpu = [], []
        for t in texts:
            t0, c0 = time.perf_counter(), cpu_s()
            kw = kws.add_keyword(t, proxy=proxy, hit_rate=hit_rate)  # type: ignore[arg-type]
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (cpu_s() - c0))
            kws.remove_keyword(kw.id)
        p50, p95 = np.percentile(ms, [50, 95])
        c50, c95 = np.percentile(cpu, [50, 95])
        report[name] = {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
                        "cpu_p50_ms": round(float(c50), 1), "cpu_p95_ms": round(float(c95), 1)}  # fmt: skip
        print(f"{name:30s} wall p50 {p50:7.0f} p95 {p95:7.0f} ms; CPU p50 {c50:7.0f} p95 {c95:7.0f} ms")
    report["load_after"] = os.getloadavg()
    print(f"load average before {report['load_before']}, after {report['load_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Load test anyone can rerun: N websocket streams of continuous speech in real time, 100 keywords.

    python -m bench.load                                  # levels 32,64,100,150,200, 30 s each
    python -m bench.load --levels 48,64 --seconds 20 --workers 1
    python -m bench.load --out bench/out/load.json --markdown

Each stream plays the same 30 s of running TTS speech (espeak-ng sentences in several voices, no
pauses beyond the voices' own) with "hey jarvis" inserted at three known times, from its own
starting point (streams are rotated so that their keywords do not all end at once), in 100 ms
frames sent in real time. 100 keywords are enrolled ("hey jarvis" and 99 dictionary phrases) with
the model's default thresholds. Per level it reports:

* keywords detected (of those spoken in admitted streams) and p50/p95 from the keyword's end to the
  event's arrival (algorithmic delay, queueing and transport included);
* server cores (CPU of the server and its worker processes / wall time), client cores (this
  process), other processes' cores (the rest of the machine: the load the figures were taken under),
  and the server's CPU per stream-second;
* streams refused (close 1013: admission control) and the worst engine backlog seen on ``/readyz``;
* the load average before and after.

The server runs as ``openkws serve`` on 127.0.0.1 (``--workers``: engine processes behind the port).
CPU accounting and the py-spy profile (``--py-spy``) are in :mod:`bench.load_cpu`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import ServerProcess
from bench.load_cpu import (
    busiest_threads,
    machine_busy_s,
    profile_markdown,
    profile_table,
    start_py_spy,
    thread_cpu_s,
    tree_cpu_s,
)
from bench.speech_audio import phrases, synth
from bench.stream_client import pct, split_refused, stream_level
from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import speech_span

OUT = Path("bench/out")
DEFAULT_MODEL = Path("src/openkws/models/default")
KEYWORD = "hey jarvis"
KEYWORD_VOICE = "espeak:en-us+m3"
KEYWORD_AT_S = (6.0, 15.0, 24.0)  # where "hey jarvis" starts in the 30 s clip
CLIP_S = 30.0
SENTENCES = [
    ("the weather is supposed to turn cold again by the end of the week", "espeak:en-gb+f2"),
    ("i left the keys on the kitchen table next to the letters", "espeak:en-us+m1"),
    ("could you send me the report before the meeting this afternoon", "espeak:en-us+f3"),
    ("we drove along the coast for hours and stopped at a small village", "espeak:en-gb+m3"),
    ("the children were playing football in the park until it got dark", "espeak:en-us+f2"),
    ("she said the train would be late because of the snow", "espeak:en-gb-scotland+m1"),
    ("there is a new restaurant around the corner that serves fresh fish", "espeak:en-us+m3"),
    ("remember to water the plants while we are away on holiday", "espeak:en-gb+f3"),
]


def log(msg: str) -> None:
    print(msg, flush=True)


def clip() -> tuple[np.ndarray, list[tuple[str, float]]]:
    """30 s of running speech with "hey jarvis" starting at KEYWORD_AT_S; (audio, [(text, end s)])."""
    kw = synth(KEYWORD, KEYWORD_VOICE)
    kw_end = speech_span(kw)[1] / SAMPLE_RATE
    parts: list[np.ndarray] = []
    n, k = 0, 0
    while n < CLIP_S * SAMPLE_RATE:
        x = synth(*SENTENCES[k % len(SENTENCES)])
        parts.append(x)
        n += len(x)
        k += 1
    audio = np.concatenate(parts)[: int(CLIP_S * SAMPLE_RATE)].copy()
    marks = []
    for at in KEYWORD_AT_S:
        i = int(at * SAMPLE_RATE)
        audio = np.concatenate([audio[:i], kw, audio[i:]])[: int(CLIP_S * SAMPLE_RATE)]
        marks.append((KEYWORD, at + kw_end))
    return audio.astype(np.float32), marks


async def watch_backlog(url: str, stop: asyncio.Event, seen: list[float]) -> None:
    """Sample /readyz (a random worker each time) every 0.5 s: the engine backlog in ms."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as c:
        while not stop.is_set():
            try:
                r = await c.get("/readyz")
                if r.status_code == 200 and r.json().get("backlog_ms") is not None:
                    seen.append(float(r.json()["backlog_ms"]))
            except (httpx.HTTPError, ValueError):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def level(url: str, pcm: bytes, n: int, seconds: float, marks: list[tuple[str, float]],
                vad: str | None) -> tuple[list[dict[str, Any]], list[float]]:  # fmt: skip
    stop = asyncio.Event()
    backlog: list[float] = []
    watcher = asyncio.create_task(watch_backlog(url, stop, backlog))
    try:
        res = await stream_level(url, pcm, n, seconds, marks, vad, debug=False)
    finally:
        stop.set()
        await watcher
    return res, backlog


def run_level(server: ServerProcess, pcm: bytes, n: int, seconds: float, marks: list[tuple[str, float]],
              vad: str | None, py_spy: Path | None = None) -> dict[str, Any]:  # fmt: skip
    load_before = os.getloadavg()
    spies = start_py_spy(server.pid, seconds, py_spy / f"streams-{n}") if py_spy is not None else []
    s0, m0, c0, w0 = tree_cpu_s(server.pid), machine_busy_s(), time.process_time(), time.perf_counter()
    t0 = thread_cpu_s(server.pid)
    res, backlog = asyncio.run(level(server.url, pcm, n, seconds, marks, vad))
    wall = time.perf_counter() - w0
    server_s = tree_cpu_s(server.pid) - s0
    threads = busiest_threads(t0, thread_cpu_s(server.pid), wall)
    client_s = time.process_time() - c0
    others_s = max(0.0, machine_busy_s() - m0 - server_s - client_s)
    for sp in spies:
        sp.wait(timeout=120)
    admitted, refused = split_refused(res)
    lat = [x for r in admitted for x in r["lat_spoken"]]
    spoken = sum(r["keywords_spoken"] for r in admitted)
    errors = sorted({e for r in admitted for e in r["errors"]})
    row = {
        "streams": n,
        "admitted": len(admitted),
        "refused": refused,
        "seconds": seconds,
        "keywords_spoken": spoken,
        "keywords_detected": len(lat),
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "max_ms": round(max(lat), 1) if lat else None,
        "server_cores": round(server_s / wall, 2),
        "client_cores": round(client_s / wall, 2),
        "other_cores": round(others_s / wall, 2),
        "server_cpu_per_stream_s": round(server_s / max(1, len(admitted)) / seconds, 5),
        "backlog_ms_max": round(max(backlog), 1) if backlog else None,
        "server_thread_cores": threads,
        "errors": errors[:5],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(wall, 1),
    }
    if py_spy is not None:
        row["profile"] = profile_table(py_spy / f"streams-{n}")
    log(
        f"  {n:4d} streams: {len(admitted)} admitted, {refused} refused; detected {len(lat)}/{spoken}, "
        f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms; server {row['server_cores']} cores, client "
        f"{row['client_cores']}, others {row['other_cores']}; {row['server_cpu_per_stream_s']} core-s per "
        f"stream-s; backlog max {row['backlog_ms_max']} ms; load {row['load_before']} -> {row['load_after']}; "
        f"busiest server threads (cores): {', '.join(threads)}"
    )
    return row


def markdown(doc: dict[str, Any]) -> str:
    head = (
        "| streams | admitted | refused | detected | p50 | p95 | server cores | client cores | other cores "
        "| core-s per stream-s | backlog max | load before → after |\n" + "| --- " * 12 + "|\n"
    )
    lines = []
    for r in doc["levels"]:
        lines.append(
            f"| {r['streams']} | {r['admitted']} | {r['refused']} | {r['keywords_detected']}/{r['keywords_spoken']} "
            f"| {r['p50_ms']} ms | {r['p95_ms']} ms | {r['server_cores']} | {r['client_cores']} | {r['other_cores']} "
            f"| {r['server_cpu_per_stream_s']} | {r['backlog_ms_max']} ms "
            f"| {'/'.join(str(x) for x in r['load_before'])} → {'/'.join(str(x) for x in r['load_after'])} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="model directory")
    ap.add_argument("--levels", default="32,64,100,150,200", help="comma list of concurrent streams")
    ap.add_argument("--seconds", type=float, default=30.0, help="real-time seconds per level")
    ap.add_argument(
        "--workers", type=int, default=None, help="server engine processes (default: one per core)"
    )
    ap.add_argument("--vad", choices=("on", "off"), default=None, help="each stream's vad option")
    ap.add_argument("--out", default=str(OUT / "load.json"))
    ap.add_argument("--markdown", action="store_true", help="also print the table for docs/BENCHMARKS.md")
    ap.add_argument("--py-spy", default=None, help="record the server with py-spy per level into this dir")
    ap.add_argument("--server-env", action="append", default=[], help="extra OPENKWS_X=Y for the server")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        ap.error(f"--levels needs positive integers, got {args.levels!r}")
    if args.seconds <= 0:
        ap.error(f"--seconds must be > 0, got {args.seconds}")
    model = Path(args.model)
    if not (model / "model.json").is_file():
        ap.error(f"no model.json in {model}; pass --model DIR")
    audio, marks = clip()
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes()
    texts = [KEYWORD, *phrases(99, seed=1)]
    env = {"OPENKWS_MAX_STREAMS": "1024", "OPENKWS_IDLE_TIMEOUT_S": "120"}
    workers = args.workers or len(os.sched_getaffinity(0))  # the server's default: one per core
    env["OPENKWS_WORKERS"] = str(workers)
    for kv in args.server_env:
        k, _, v = kv.partition("=")
        env[k] = v
    log(f"model {model}, {os.cpu_count()} CPUs, load average {os.getloadavg()}, server env {env}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="openkws-load-") as tmp:
        server = ServerProcess(model, Path(tmp) / "data", Path(tmp) / "server.log", env=env, omp_threads=None)
        server.start()
        try:
            server.wait_ready(timeout=600)
            r = httpx.post(
                server.url + "/v1/keywords/batch",
                json={"keywords": [{"text": t} for t in texts]},
                timeout=600,
            )
            r.raise_for_status()
            time.sleep(3.0)  # workers re-read the registry every second
            for n in levels:
                spy = Path(args.py_spy) if args.py_spy else None
                rows.append(run_level(server, pcm, n, args.seconds, marks, args.vad, spy))
                time.sleep(3.0)
        finally:
            server.terminate(timeout=60, sig=signal.SIGINT)
            server_log = server.log_tail(4000)
    doc = {
        "command": "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(model),
        "workers": workers,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "keywords": len(texts),
        "clip_s": CLIP_S,
        "keyword_at_s": KEYWORD_AT_S,
        "levels": rows,
        "server_log_tail": server_log,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        print(markdown(doc))
        for row in rows:
            if "profile" in row:
                print(profile_markdown(row))
    log(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

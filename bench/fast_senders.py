"""Fast senders (issue 14): websocket clients that push large frames as fast as the socket takes them.

    python -m bench.fast_senders --clients 6 --seconds 120    # the reliability figure (JSON in bench/out/)

A server subprocess (default settings, 127.0.0.1) gets ``--clients`` streams. Each sends
``--frame-bytes`` pcm16 frames (1 MiB = 32.8 s of 16 kHz audio) back to back for ``--seconds``
while reading every reply, then ``stop``, and waits for the last message and the close code.
The server pauses reading a stream whose backlog is over ``max_pending_seconds`` (TCP
backpressure); the figures say whether every stream still ends with a final message that says why.

The clients' own keepalive pings are off: a ping from the client is read by the server only after
the audio sent before it, so a client sending faster than real time must not time out on it
(docs/SERVICE.md says the same to client writers).

Figures: streams that ended without a final message (target 0), close codes, the final message
types, audio sent and processed per stream, and the server's RSS (baseline after start-up, peak,
end; per stream = (peak - baseline) / clients), sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench._server import STOP_MESSAGE, ServerProcess, start_message
from openkws.constants import SAMPLE_RATE

OUT = Path("bench/out")
MiB = 1 << 20


async def sender(url: str, frame: bytes, seconds: float, out: dict[str, Any]) -> None:
    out.update(frames=0, messages={}, final=None, close_code=None, error=None)
    async with connect(
        url.replace("http://", "ws://") + "/v1/stream",
        max_size=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=60,
    ) as ws:
        await ws.send(start_message())

        async def read() -> None:
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type", "?")
                    out["messages"][kind] = out["messages"].get(kind, 0) + 1
                    out["final"] = msg
            except ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        t_end = time.monotonic() + seconds
        try:
            while time.monotonic() < t_end and not reader.done():
                await ws.send(frame)
                out["frames"] += 1
            if not reader.done():
                await ws.send(STOP_MESSAGE)
        except ConnectionClosed:
            pass
        await reader
        out["close_code"] = ws.close_code
        out["close_reason"] = ws.close_reason


async def sample_rss(server: ServerProcess, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(server.rss_bytes())
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    samples = args.frame_bytes // 2
    frame = np.clip(rng.normal(0, 1500, samples), -32768, 32767).astype("<i2").tobytes()
    baseline = server.rss_bytes()
    rss: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(server, rss, stop))
    results: list[dict[str, Any]] = [{} for _ in range(args.clients)]
    t0 = time.monotonic()
    await asyncio.gather(*(sender(server.url, frame, args.seconds, r) for r in results))
    wall = time.monotonic() - t0
    stop.set()
    await sampler
    end = server.rss_bytes()
    no_final = [
        i
        for i, r in enumerate(results)
        if r["final"] is None or r["final"].get("type") not in ("summary", "error")
    ]
    peak = max(rss, default=baseline)
    return {
        "clients": args.clients,
        "frame_bytes": args.frame_bytes,
        "send_seconds": args.seconds,
        "wall_s": round(wall, 1),
        "streams_without_final_message": len(no_final),
        "close_codes": sorted(r["close_code"] for r in results),
        "final_types": [r["final"]["type"] if r["final"] else None for r in results],
        "final_reasons": [
            (r["final"] or {}).get("reason") or (r["final"] or {}).get("code") for r in results
        ],
        "frames_sent": [r["frames"] for r in results],
        "audio_sent_s": [round(r["frames"] * samples / SAMPLE_RATE, 1) for r in results],
        "audio_processed_s": [round((r["final"] or {}).get("audio_ms", 0.0) / 1000.0, 1) for r in results],
        "detections": [r["messages"].get("detection", 0) for r in results],
        "rss_mib": {
            "baseline": round(baseline / MiB, 1),
            "peak": round(peak / MiB, 1),
            "end": round(end / MiB, 1),
            "per_stream_peak": round((peak - baseline) / MiB / args.clients, 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path("src/openkws/models/default"))
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--frame-bytes", type=int, default=MiB)
    ap.add_argument("--out", type=Path, default=OUT / "fast_senders.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(args.model_dir, Path(tmp) / "data", Path(tmp) / "server.log", log_level="info")
        server.start()
        try:
            server.wait_ready()
            report = asyncio.run(run(args, server))
        finally:
            server.terminate()
            log = server.log_tail(20000)
        report["server_log_errors"] = [
            line
            for line in log.splitlines()
            if "Traceback" in line or "Logging error" in line or "ERROR" in line
        ][:20]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

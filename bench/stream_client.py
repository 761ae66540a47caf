"""One websocket stream of the service benchmarks: speech sent in real time (100 ms frames, each when
its audio has been recorded), and the latency of each detection from the keyword's last spoken sound,
the window end and the decision. Used by :mod:`bench.service_bench` and :mod:`bench.load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from bench._server import frames_of, open_stream, send_paced
from openkws.constants import SAMPLE_RATE
from openkws.protocol import CloseCode

CHUNK_MS = 100


def keyword_ends(
    marks: list[tuple[str, float]], clip_s: float, offset_s: float, seconds: float
) -> list[tuple[str, float]]:
    """Stream times at which each keyword's speech ends, for a stream that plays the clip from
    ``offset_s`` (wrapping around) for ``seconds``."""
    out = []
    for lap in range(int(seconds // clip_s) + 2):
        for text, end in marks:
            t = end - offset_s + lap * clip_s
            if 0.0 < t <= seconds:
                out.append((text, t))
    return sorted(out, key=lambda m: m[1])


SPOKEN_MATCH_S = 2.0  # a detection belongs to the keyword occurrence ending within this of its end_ms


def closed_error(e: ConnectionClosed) -> str:
    """The server's error code from a close frame (its reason starts with the code, e.g.
    ``too_many_streams; retry-after=5``), else the close code; or how the connection was lost."""
    if e.rcvd is None:
        return f"connection lost: {e}"
    return e.rcvd.reason.split(";", 1)[0].strip() or f"close {e.rcvd.code}"


def not_served(error: str, keywords_spoken: int, refused: bool) -> dict[str, Any]:
    """The result of a stream that never got ``ready``: refused by admission control, or an error."""
    return {
        "errors": [error],
        "refused": refused,
        "lat_end": [],
        "lat_decided": [],
        "lat_near": [],
        "lat_spoken": [],
        "keywords_spoken": keywords_spoken,
    }


async def one_stream(
    url: str,
    pcm: bytes,
    offset_chunks: int,
    seconds: float,
    debug: bool,
    marks: list[tuple[str, float]] | None = None,
    vad: str | None = None,
) -> dict[str, Any]:
    """Stream ``seconds`` of ``pcm`` from frame ``offset_chunks`` in real time and time the events.

    ``refused`` is True when the server closed with 1013 (admission control) before ``ready``: its
    ``error`` message came first, or the close frame did (it can overtake our ``start``). A close after
    ``ready`` is an error of an admitted stream, recorded with the latencies measured until then.
    """
    frames = frames_of(pcm, CHUNK_MS)
    frames = [frames[(offset_chunks + k) % len(frames)] for k in range(int(seconds * 1000 / CHUNK_MS))]
    clip_s = len(pcm) / (2 * SAMPLE_RATE)
    spoken = keyword_ends(marks or [], clip_s, offset_chunks * CHUNK_MS / 1000, len(frames) * CHUNK_MS / 1000)
    matched: set[int] = set()
    lat_spoken: list[float] = []
    t0 = 0.0
    sent_at: list[float] = []
    lat_end: list[float] = []
    lat_decided: list[float] = []
    lat_near: list[float] = []
    errors: list[str] = []
    summary: dict[str, Any] | None = None
    admitted = False
    try:
        async with open_stream(url, debug=debug, vad=vad) as (ws, ready):
            if ready.get("type") != "ready":
                code = str(ready.get("code", f"no ready: {ready}"))
                return not_served(code, len(spoken), ready.get("close_code") == CloseCode.TRY_AGAIN_LATER)
            admitted = True

            def sent_time(ms: float) -> float:
                k = min(int(ms // CHUNK_MS), len(sent_at) - 1)
                return sent_at[k]

            async def receive() -> None:
                nonlocal summary
                try:
                    async for raw in ws:
                        m = json.loads(raw)
                        now = time.perf_counter()
                        if m["type"] == "detection":
                            lat_end.append(1000 * (now - sent_time(m["end_ms"] - 1e-3)))
                            lat_decided.append(1000 * (now - sent_time(m["decided_ms"] - 1e-3)))
                            # the user's view: from the moment the keyword's last sound was spoken
                            for j, (text, end_s) in enumerate(spoken):
                                if (
                                    j not in matched
                                    and text == m["text"]
                                    and abs(end_s - m["end_ms"] / 1000) <= SPOKEN_MATCH_S
                                ):
                                    matched.add(j)
                                    lat_spoken.append(1000 * (now - (t0 + end_s)))
                                    break
                        elif m["type"] == "near_miss":
                            lat_near.append(1000 * (now - sent_time(m["time_ms"] - 1e-3)))
                        elif m["type"] == "error":
                            errors.append(m["code"])
                        elif m["type"] == "summary":
                            summary = m
                            return
                except ConnectionClosed as e:  # closed mid-stream: after its ``error`` message, if any
                    if not errors:
                        errors.append(closed_error(e))

            rx = asyncio.create_task(receive())
            # frame k is sent when its audio has been "recorded": at t0 + (k + 1) x 100 ms, so stream
            # time tau was spoken at t0 + tau and buffering the frame counts in the latency
            t0 = time.perf_counter()
            with contextlib.suppress(ConnectionClosed):  # the receiver records why it closed
                await send_paced(ws, frames, CHUNK_MS / 1000, t0, first_at=CHUNK_MS / 1000, sent_at=sent_at)
            stop_at = time.perf_counter()
            try:
                await asyncio.wait_for(rx, timeout=30)
            except TimeoutError:
                errors.append("no summary within 30 s")
            if summary is None and not errors:
                errors.append("closed without summary")
            drain_s = time.perf_counter() - stop_at
    except ConnectionClosed as e:
        if admitted:  # the receiver and sender handle closes after ``ready``; this is unexpected
            raise
        refused = e.rcvd is not None and e.rcvd.code == CloseCode.TRY_AGAIN_LATER
        return not_served(closed_error(e), len(spoken), refused)
    return {
        "errors": errors,
        "refused": False,
        "lat_end": lat_end,
        "lat_decided": lat_decided,
        "lat_near": lat_near,
        "lat_spoken": lat_spoken,
        "keywords_spoken": len(spoken),
        "drain_s": drain_s,
        "ok": summary is not None,
    }


async def stream_level(
    url: str,
    pcm: bytes,
    n: int,
    seconds: float,
    marks: list[tuple[str, float]] | None = None,
    vad: str | None = None,
    debug: bool = True,
) -> list[dict[str, Any]]:
    """``n`` concurrent :func:`one_stream` results, each stream rotated by a different number of frames
    (so that keywords do not all end at once). A stream that raised (e.g. the connection failed) is an
    error named by its type and message, ``ConnectionRefusedError: ...``, never a refusal."""
    chunks = len(pcm) // (2 * SAMPLE_RATE * CHUNK_MS // 1000)
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one_stream(url, pcm, (i * 37) % chunks, seconds, debug, marks, vad)))
        await asyncio.sleep(CHUNK_MS / 1000 / max(1, n))  # stagger starts over one frame period
    out = []
    for r in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(r, Exception):
            r = not_served(f"{type(r).__name__}: {r}", 0, refused=False)
        elif isinstance(r, BaseException):  # cancelled or interrupted: not a measurement
            raise r
        out.append(r)
    return out


def split_refused(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(the admitted streams' results, how many streams admission control refused)."""
    admitted = [r for r in results if not r["refused"]]
    return admitted, len(results) - len(admitted)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None

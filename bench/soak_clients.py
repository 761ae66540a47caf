"""The soak's clients (:mod:`bench.soak`): real-time websocket streams checked against the offline
reference, keyword churners, the server's RSS sampler, and the figures they gather (:class:`Stats`)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._server import AuthHow, ServerProcess, frames_of, open_stream, send_paced
from bench.words import SPOKEN_WORDS

CHUNK_MS = 100
MATCH_TOLERANCE_MS = 100.0
CHURN_WORDS = SPOKEN_WORDS[:30]


@dataclass
class Stats:
    streams: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    spurious: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    decision_latency_ms: list[float] = field(default_factory=list)
    churn_ops: int = 0
    churn_latency_ms: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    clients: int = 0
    warm: set[int] = field(default_factory=set)  # clients that finished their first stream
    warm_rss: int | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what[:300])


def match(reference: list[tuple[int, float]], got: list[tuple[int, float]]) -> tuple[int, int]:
    """(lost, spurious): reference events without a streamed event of the same keyword starting
    within MATCH_TOLERANCE_MS, and streamed events left over."""
    left = list(got)
    lost = 0
    for kid, start in reference:
        hit = next((g for g in left if g[0] == kid and abs(g[1] - start) <= MATCH_TOLERANCE_MS), None)
        if hit is None:
            lost += 1
        else:
            left.remove(hit)
    return lost, len(left)


async def stream_once(
    url: str,
    token: str,
    how: AuthHow,
    pcm: bytes,
    ids: list[int],
    reference: list[tuple[int, float]],
    stats: Stats,
) -> None:
    events: list[tuple[int, float]] = []
    summary: dict[str, Any] | None = None
    async with open_stream(url, token=token, how=how, keywords=ids) as (ws, ready):
        if ready.get("type") != "ready":
            stats.error(f"start refused: {ready}")
            return
        t0 = time.perf_counter()
        sender = asyncio.create_task(
            send_paced(ws, frames_of(pcm, CHUNK_MS), CHUNK_MS / 1000, t0, first_at=CHUNK_MS / 1000)
        )
        try:
            async for raw in ws:
                now = time.perf_counter()
                m = json.loads(raw)
                if m["type"] == "detection":
                    events.append((int(m["keyword_id"]), float(m["start_ms"])))
                    stats.latency_ms.append(1000 * (now - t0) - m["end_ms"])
                    stats.decision_latency_ms.append(1000 * (now - t0) - m["decided_ms"])
                elif m["type"] == "summary":
                    summary = m
                elif m["type"] == "error":
                    stats.error(f"stream error: {m}")
        finally:
            sender.cancel()
        code = ws.close_code
    if summary is None or code != 1000:
        stats.error(f"stream ended without summary + 1000 (close {code}, summary {summary is not None})")
        return
    lost, spurious = match(reference, events)
    stats.streams += 1
    stats.expected += len(reference)
    stats.received += len(events)
    stats.lost += lost
    stats.spurious += spurious


async def streamer(
    n: int,
    url: str,
    token: str,
    pcm: bytes,
    ids: list[int],
    reference: list[tuple[int, float]],
    stats: Stats,
    until: float,
    server: ServerProcess,
) -> None:
    hows: tuple[AuthHow, ...] = ("header", "subprotocol", "query")
    k = 0
    await asyncio.sleep(0.37 * n)  # stagger the clients
    while time.monotonic() < until:
        try:
            await stream_once(url, token, hows[(n + k) % 3], pcm, ids, reference, stats)
        except Exception as e:  # any transport failure is an error of the run
            stats.error(f"client {n}: {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
        k += 1
        if n not in stats.warm:
            stats.warm.add(n)
            if stats.warm_rss is None and len(stats.warm) == stats.clients:
                stats.warm_rss = server.rss_bytes()


async def churner(n: int, url: str, token: str, stats: Stats, until: float, rate_per_s: float) -> None:
    rng = random.Random(1000 + n)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        while time.monotonic() < until:
            text = " ".join(rng.sample(CHURN_WORDS, rng.randint(1, 3)))
            try:
                t = time.perf_counter()
                r = await c.post("/v1/keywords", json={"text": text, "threshold": 0.99})
                stats.churn_latency_ms.append(1000 * (time.perf_counter() - t))
                if r.status_code not in (200, 201):
                    stats.error(f"enroll {r.status_code}: {r.text[:200]}")
                    continue
                kid = r.json()["id"]
                r = await c.patch(f"/v1/keywords/{kid}", json={"threshold": 0.98})
                if r.status_code != 200:
                    stats.error(f"patch {r.status_code}: {r.text[:200]}")
                r = await c.delete(f"/v1/keywords/{kid}")
                if r.status_code not in (204, 404):  # 404: another churner of the tenant deleted it first
                    stats.error(f"delete {r.status_code}: {r.text[:200]}")
                stats.churn_ops += 3
            except httpx.HTTPError as e:
                stats.error(f"churn: {type(e).__name__}: {e}")
            await asyncio.sleep(1.0 / rate_per_s)


async def sample_rss(server: ServerProcess, stats: Stats, until: float, every_s: float = 2.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() < until:
        stats.rss.append((time.monotonic() - t0, server.rss_bytes()))
        await asyncio.sleep(every_s)

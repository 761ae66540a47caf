"""Issue 25 defect 3: a PostgreSQL outage degrades the service instead of failing it.

A real server (``openkws serve`` subprocess, auth on) on a real PostgreSQL cluster: a websocket
stream sends speech paced at real time and an enrollment loop enrolls one keyword after another;
PostgreSQL is stopped for ~10 s and started again. During the outage the stream keeps detecting
(from the in-memory index), ``/readyz`` says ``degraded`` (503 for ``role=write``), ``/v1/detect``
still authenticates from the key cache, enrollments get 503 with ``Retry-After``, and the Wyoming
``describe`` keeps answering. After the restart enrollments succeed again and every acknowledged
keyword is in the store with its id. The stream's detections during the outage are printed
(``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

import openkws
from bench._server import ServerProcess, frames_of, free_port, open_stream, send_paced
from openkws.constants import SAMPLE_RATE
from openkws.keywords.store import KeywordStore
from openkws.server.auth import ApiKeys
from openkws.wyoming import WakeService, WyomingConfig, run_server
from tests.deploy.postgres import PostgresUnavailable
from tests.reliability.pg_cluster import PgCluster, pg_cluster
from tests.service.conftest import KEYWORDS, pcm16, wav_bytes

PACKAGED_MODEL = Path(openkws.__file__).parent / "models" / "default"
OUTAGE_S = 10.0
BEFORE_S = 6.0  # stream and enrollments run this long before PostgreSQL stops
AFTER_S = 25.0  # at most this long after the restart for enrollments to succeed again
FRAME_MS = 100
WORDS = ("alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "mike", "oscar")


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    try:
        with pg_cluster() as c:
            yield c
    except PostgresUnavailable as e:
        pytest.skip(str(e))


@dataclass
class Timeline:
    """What the clients saw, with ``time.monotonic()`` stamps."""

    down_at: float = 0.0  # PostgreSQL stopped (pg_ctl stop returned)
    starting_at: float = 0.0  # pg_ctl start called: the outage ends somewhere after this
    up_at: float = 0.0  # PostgreSQL accepts connections again
    stream_t0: float = 0.0  # when the stream's audio time 0 was sent
    detections: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrival, message)
    # (request sent, status, text, answer received): a request sent just before the restart may be
    # answered after it, so the outage check classifies by both ends
    enroll: list[tuple[float, int, str, float]] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # text -> id of every 2xx
    retry_after: set[str] = field(default_factory=set)
    stream_end: dict[str, Any] = field(default_factory=dict)

    def during(self) -> list[tuple[float, dict[str, Any]]]:
        """Detections of audio sent while PostgreSQL was down, with their arrival times."""
        return [
            (t, d)
            for t, d in self.detections
            if self.down_at <= self.stream_t0 + d["decided_ms"] / 1000 < self.starting_at
        ]


def _texts() -> Iterator[str]:
    for a in WORDS:
        for b in WORDS:
            if a != b:
                yield f"{a} {b}"


async def _stream(url: str, token: str, audio: np.ndarray, seconds: float, tl: Timeline) -> None:
    """One stream for ``seconds`` of speech, paced at real time; records detections and the end."""
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(audio)))
    frames = frames_of(pcm16(np.tile(audio, reps)[: int(seconds * SAMPLE_RATE)]), FRAME_MS)
    async with open_stream(url, token=token) as (ws, ready):
        assert ready["type"] == "ready", ready
        tl.stream_t0 = time.monotonic()
        sender = asyncio.create_task(send_paced(ws, frames, FRAME_MS / 1000, time.perf_counter()))
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "detection":
                tl.detections.append((time.monotonic(), msg))
            elif msg["type"] in ("summary", "error"):
                tl.stream_end = msg
        await sender
        tl.stream_end["close_code"] = ws.close_code


async def _enroll_loop(url: str, token: str, tl: Timeline, stop: asyncio.Event) -> None:
    """Enroll new keywords one by one; a 503 is retried (same text) after its Retry-After."""
    texts = _texts()
    text = next(texts)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = await c.post("/v1/keywords", json={"text": text}, timeout=30)
            except httpx.HTTPError as e:  # never expected: the server answers during the outage
                tl.enroll.append((sent, 0, f"{text}: {e!r}", time.monotonic()))
                await asyncio.sleep(0.5)
                continue
            tl.enroll.append((sent, r.status_code, text, time.monotonic()))
            if r.status_code in (200, 201):
                tl.acked[text] = r.json()["id"]
                text = next(texts)
                await asyncio.sleep(0.3)
            elif r.status_code == 503:
                assert r.json()["error"]["code"] == "database_unavailable", r.text
                tl.retry_after.add(r.headers.get("retry-after", ""))
                await asyncio.sleep(1.0)  # shorter than Retry-After: more samples of the outage
            else:
                raise AssertionError(f"enrollment answered {r.status_code}: {r.text}")


@contextlib.contextmanager
def _wyoming(model_dir: Path, db_url: str) -> Iterator[str]:
    """The Wyoming server on the same database, in a thread with its own event loop."""
    service = WakeService.load(WyomingConfig(model_dir=model_dir, database_url=db_url, tenant="acme"))
    uri = f"tcp://127.0.0.1:{free_port()}"
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        ev = asyncio.Event()
        task = asyncio.ensure_future(run_server(service, uri, ev))
        await ev.wait()
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert started.wait(120), "the Wyoming server did not start"
    try:
        yield uri
    finally:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        t.join(timeout=10)


async def _describe(uri: str) -> list[str]:
    host, port = uri.removeprefix("tcp://").split(":")
    async with AsyncTcpClient(host, int(port)) as client:
        await client.write_event(Describe().event())
        event = await asyncio.wait_for(client.read_event(), 30)
    assert event is not None and Info.is_type(event.type), event
    return [m.name for w in Info.from_event(event).wake for m in w.models]


def test_postgres_outage_degrades_and_recovers(
    cluster: PgCluster, speech: np.ndarray, tmp_path: Path
) -> None:
    model_dir = PACKAGED_MODEL  # trained: "hey jarvis" in the speech fires at the default threshold
    store = KeywordStore(cluster.url)
    keys = ApiKeys(store)
    admin, streamer = keys.create("acme", "admin").token, keys.create("acme", "stream").token
    store.close()
    server = ServerProcess(
        model_dir,
        tmp_path / "data",
        tmp_path / "server.log",
        env={
            "OPENKWS_DATABASE_URL": cluster.url,
            "OPENKWS_AUTH": "on",
            "OPENKWS_SYNC_INTERVAL_S": "1",
            "OPENKWS_ENROLL_RATE_PER_S": "100",
            "OPENKWS_IDLE_TIMEOUT_S": "60",
        },
        log_level="info",
    )
    server.start()
    try:
        server.wait_ready(900)  # minutes on a loaded machine
        h = {"Authorization": f"Bearer {admin}"}
        body = {"keywords": [{"text": t} for t in KEYWORDS]}
        r = httpx.post(server.url + "/v1/keywords/batch", json=body, headers=h, timeout=60)
        assert r.status_code == 200, r.text
        with _wyoming(model_dir, cluster.url) as wyoming_uri:
            tl, checks = asyncio.run(
                _run(server.url, admin, streamer, speech, cluster, wyoming_uri, model_dir)
            )
        final = httpx.get(server.url + "/v1/keywords", params={"limit": 1000}, headers=h, timeout=30).json()
    finally:
        server.terminate()
    log = server.log_tail(200_000)

    during = tl.during()
    print(
        f"\nPostgreSQL down for {tl.up_at - tl.down_at:.1f} s (stop returned at t={tl.down_at - tl.stream_t0:.1f} s "
        f"of the stream, start called at t={tl.starting_at - tl.stream_t0:.1f} s); detections of audio sent "
        "during the outage (stream time, arrival time, keyword, score):"
    )
    for t, d in during:
        print(
            f"  {d['decided_ms'] / 1000:6.1f} s  arrived {t - tl.stream_t0:6.1f} s  {d['text']!r:22} "
            f"score {d['score']:.3f} >= {d['threshold']:.3f}"
        )
    codes = [s for t, s, _, answered in tl.enroll if tl.down_at <= t and answered < tl.starting_at]
    print(f"enrollment answers during the outage: {codes}; Retry-After: {sorted(tl.retry_after)}")
    print(f"readyz during the outage: {checks['readyz']}; role=write: {checks['readyz_write']}")
    print(f"/v1/detect during the outage: {checks['detect']}; Wyoming describe: {checks['describe']}")
    print(f"acknowledged enrollments: {len(tl.acked)}; stream end: {tl.stream_end}")

    assert during, "the stream detected nothing while PostgreSQL was down"
    assert tl.stream_end.get("type") == "summary" and tl.stream_end.get("close_code") == 1000, tl.stream_end
    assert 503 in codes and set(codes) <= {503}, codes  # no 500, and nothing acknowledged while down
    assert tl.retry_after and all(v.isdigit() for v in tl.retry_after), tl.retry_after
    assert any(s in (200, 201) and t >= tl.up_at for t, s, _, _ in tl.enroll), "no enrollment after restart"
    assert all(s in (200, 201, 503) for _, s, _, _ in tl.enroll), tl.enroll
    assert checks["readyz_before"] == (200, "ready")
    assert checks["readyz"] == (200, "degraded") and checks["readyz_write"] == 503
    assert checks["readyz_after"] == (200, "ready")
    assert checks["detect"] == 200
    assert set(checks["describe"]) >= set(KEYWORDS)
    stored = {k["text"]: k["id"] for k in final["items"]}
    lost = {t: i for t, i in tl.acked.items() if stored.get(t) != i}
    assert not lost, f"acknowledged enrollments missing after the outage: {lost}"
    assert "unhandled error" not in log, log[-5000:]


async def _run(
    url: str,
    admin: str,
    streamer: str,
    speech: np.ndarray,
    cluster: PgCluster,
    wyoming_uri: str,
    model_dir: Path,
) -> tuple[Timeline, dict[str, Any]]:
    tl = Timeline()
    checks: dict[str, Any] = {}
    stop = asyncio.Event()
    seconds = BEFORE_S + OUTAGE_S + 12.0
    stream = asyncio.create_task(_stream(url, streamer, speech, seconds, tl))
    enroll = asyncio.create_task(_enroll_loop(url, admin, tl, stop))
    sh = {"Authorization": f"Bearer {streamer}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await c.post("/v1/detect", files={"file": ("a.wav", wav_bytes(speech[:SAMPLE_RATE]))}, headers=sh)
        r = await c.get("/readyz")
        checks["readyz_before"] = (r.status_code, r.json().get("status"))
        await asyncio.sleep(BEFORE_S)
        await asyncio.to_thread(cluster.stop, "fast")
        tl.down_at = time.monotonic()
        await asyncio.sleep(2.0)
        r = await c.get("/readyz")
        checks["readyz"] = (r.status_code, r.json().get("status"))
        checks["readyz_write"] = (await c.get("/readyz", params={"role": "write"})).status_code
        r = await c.post("/v1/detect", files={"file": ("a.wav", wav_bytes(speech))}, headers=sh)
        checks["detect"] = r.status_code
        checks["describe"] = await _describe(wyoming_uri)
        await asyncio.sleep(max(0.0, tl.down_at + OUTAGE_S - time.monotonic()))
        tl.starting_at = time.monotonic()
        await asyncio.to_thread(cluster.start)
        tl.up_at = time.monotonic()
        deadline = time.monotonic() + AFTER_S
        while time.monotonic() < deadline and not any(
            t >= tl.up_at and s in (200, 201) for t, s, _, _ in tl.enroll
        ):
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.5)  # > the readyz database check age: a fresh outcome
        r = await c.get("/readyz")
        checks["readyz_after"] = (r.status_code, r.json().get("status"))
    stop.set()
    await enroll
    await stream
    return tl, checks

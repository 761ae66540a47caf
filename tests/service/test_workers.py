"""``openkws serve --workers N``: engine processes behind one port share one registry; a keyword
write is answered only once every live worker has applied it, so a stream that another worker serves
right after the answer (no sleep) sees it; a hung worker delays the answer at most
``OPENKWS_WORKER_SYNC_TIMEOUT_S``, a killed one not at all."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench._server import ServerProcess, frames_of
from openkws.server.workers import check_port_free, worker_settings
from openkws.settings import Settings
from tests.service.conftest import START, VOICE, pcm16, silence

WORKER = "x-openkws-worker"
SYNC = "x-openkws-sync"
STOP = json.dumps({"type": "stop", "version": 1})
READY_S = 900.0  # several model loads on a busy 2-core machine: a guard against hanging, not a timing


def _start(model_dir: Path, tmp_path: Path, n: int, **env: str) -> ServerProcess:
    """``openkws serve`` with ``n`` workers (SQLite store), started and answering ``/readyz``."""
    server = ServerProcess(
        model_dir,
        tmp_path / "data",
        tmp_path / "server.log",
        # a generous acknowledgement bound: these tests check what an answer guarantees, not how fast
        env={"OPENKWS_WORKERS": str(n), "OPENKWS_ENROLL_HIT_RATE": "false",
             "OPENKWS_WORKER_SYNC_TIMEOUT_S": "60", **env},
        log_level="info",
    )  # fmt: skip
    server.start()
    server.wait_ready(timeout=READY_S)
    return server


def _all_workers(server: ServerProcess, n: int) -> None:
    """Return once each of the ``n`` workers has answered ``/readyz`` (a connection may land on any)."""
    workers: set[str] = set()
    deadline = time.monotonic() + READY_S
    while len(workers) < n:
        assert time.monotonic() < deadline, server.log_tail()
        try:
            r = httpx.get(server.url + "/readyz", timeout=10)
        except httpx.HTTPError:
            continue
        if r.status_code == 200:
            workers.add(r.headers[WORKER])


async def _open_on(url: str, worker: str, keywords: list[int], tries: int = 200) -> dict[str, Any]:
    """Connect until the kernel hands the connection to ``worker``; start a stream matching only
    ``keywords`` and return the server's first answer (``ready``, or the error naming missing ids)."""
    from websockets.asyncio.client import connect

    for _ in range(tries):
        async with connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None) as ws:
            if ws.response.headers[WORKER] != worker:
                continue
            await ws.send(json.dumps({**START, "keywords": keywords}))
            first = json.loads(await ws.recv())
            if first["type"] == "ready":
                await ws.send(STOP)
                assert [json.loads(m) async for m in ws][-1]["type"] == "summary"
            return dict(first)
    raise AssertionError(f"{tries} connections never reached worker {worker}")


def _write(method: str, url: str, **kw: Any) -> httpx.Response:
    """A keyword write, retried when the connection reached a stopped or killed worker. Enrolling the
    same text again is idempotent, so a retry never enrolls twice."""
    for _ in range(50):
        try:
            return httpx.request(method, url, timeout=httpx.Timeout(120, read=5), **kw)
        except httpx.TransportError:  # reached the stopped (or just killed) worker
            continue
    raise AssertionError(f"{method} {url}: every try reached a stopped worker")


def test_worker_settings_turn_registry_sync_on(tmp_path: Path) -> None:
    assert worker_settings(Settings(data_dir=tmp_path)).sync_interval_s == 1.0
    assert worker_settings(Settings(data_dir=tmp_path, sync_interval_s=3.0)).sync_interval_s == 3.0
    assert Settings(workers=3).resolved_workers() == 3
    assert Settings().resolved_workers() >= 1


def test_default_workers_follow_the_cgroup_quota(tmp_path: Path) -> None:
    import os

    from openkws.settings import usable_cores

    cores = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 workers at most
    assert usable_cores(tmp_path / "cpu.max") == min(cores, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path / "cpu.max") == cores
    assert usable_cores(tmp_path / "absent") == cores
    (tmp_path / "cpu.max").write_text("garbage")
    assert usable_cores(tmp_path / "cpu.max") == cores


def test_responses_name_their_worker(make_client: Callable[..., TestClient]) -> None:
    c = make_client(worker_id=1)
    assert c.get("/healthz").headers[WORKER] == "1"
    assert c.get("/v1/nothing-here").headers[WORKER] == "1"  # errors too


def test_sqlite_version_sees_commits_of_other_connections(tmp_path: Path) -> None:
    import sqlite3

    from openkws.server.registry_sync import SqliteVersion

    db = str(tmp_path / "k.db")
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.commit()
    v = SqliteVersion(db)
    assert not v.changed()
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()
    assert v.changed() and not v.changed()
    v.close()
    writer.close()


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*choose another --port"):
            check_port_free("127.0.0.1", port)


async def _stream_on_other_worker(url: str, avoid: str, pcm: bytes, tries: int = 60) -> tuple[str, list[Any]]:
    """Connect until the kernel hands the connection to a worker other than ``avoid``; stream ``pcm``
    there in 100 ms frames (no pacing), stop, and return (worker, messages)."""
    from websockets.asyncio.client import connect

    for _ in range(tries):
        async with connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None) as ws:
            worker = ws.response.headers[WORKER]
            if worker == avoid:
                continue
            await ws.send(json.dumps(START))
            assert json.loads(await ws.recv())["type"] == "ready"
            for f in frames_of(pcm, 100):
                await ws.send(f)
            await ws.send(json.dumps({"type": "stop", "version": 1}))
            msgs = [json.loads(m) async for m in ws]
            return worker, msgs
    raise AssertionError(f"{tries} connections all went to worker {avoid}")


def test_enrollment_through_one_worker_reaches_a_stream_on_another(
    model_dir: Path,
    tmp_path: Path,
    synth: Callable[[str, str], np.ndarray],
) -> None:
    server = _start(model_dir, tmp_path, 2)
    try:
        _all_workers(server, 2)
        r = httpx.post(
            server.url + "/v1/keywords",
            json={"text": "hey jarvis", "threshold": 0.0},  # untrained model: let any window fire
            timeout=60,
        )
        assert r.status_code == 201, r.text
        assert r.headers[SYNC] == "ok", (r.headers, server.log_tail())
        kid, enrolled_on = r.json()["id"], r.headers[WORKER]
        # no waiting: the answer came once every worker's index had the keyword
        speech = np.concatenate([silence(0.5), synth("hey jarvis", VOICE), silence(1.0)])
        worker, msgs = asyncio.run(_stream_on_other_worker(server.url, enrolled_on, pcm16(speech)))
        assert worker != enrolled_on
        assert msgs[-1]["type"] == "summary", msgs[-1]
        assert any(m["type"] == "detection" and m["keyword_id"] == kid for m in msgs), msgs
    finally:
        assert server.terminate(timeout=120) == 0, server.log_tail()
    log = server.log_path.read_text()
    assert "2 workers on 127.0.0.1" in log and "[worker 1]" in log


def test_every_worker_has_a_write_when_it_is_answered(model_dir: Path, tmp_path: Path) -> None:
    """Enroll through whichever worker answers, then at once (no sleep) open a stream on every other
    worker matching only the new keyword: each has it. Delete it, and at once each has dropped it."""
    n = 3
    server = _start(model_dir, tmp_path, n)
    try:
        _all_workers(server, n)
        others_seen: set[str] = set()
        for i in range(12):
            r = httpx.post(server.url + "/v1/keywords", json={"text": f"open door number {i}"}, timeout=120)
            assert r.status_code == 201 and r.headers[SYNC] == "ok", (r.text, r.headers)
            kid, on = r.json()["id"], r.headers[WORKER]
            for w in sorted({str(j) for j in range(n)} - {on}):
                first = asyncio.run(_open_on(server.url, w, [kid]))
                assert first["type"] == "ready", (i, w, first)
                others_seen.add(w)
            r = httpx.delete(f"{server.url}/v1/keywords/{kid}", timeout=120)
            assert r.status_code == 204 and r.headers[SYNC] == "ok", r.headers
            gone_on = r.headers[WORKER]
            for w in sorted({str(j) for j in range(n)} - {gone_on}):
                first = asyncio.run(_open_on(server.url, w, [kid]))
                assert first["type"] == "error" and first["code"] == "unknown_keyword", (i, w, first)
        assert others_seen == {str(j) for j in range(n)}  # every worker was checked as "another"
    finally:
        assert server.terminate(timeout=120) == 0, server.log_tail()
    assert f"{n} workers on 127.0.0.1" in server.log_path.read_text()


def _worker_pids(server: ServerProcess) -> list[int]:
    """The supervisor's worker processes (its other child is multiprocessing's resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if ppid == server.pid and b"resource_tracker" not in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _restarted(server: ServerProcess) -> None:
    """Wait until the supervisor has restarted a killed worker (a third "openkws ready") and both serve."""
    deadline = time.monotonic() + READY_S
    while server.log_path.read_text().count("openkws ready") < 3:
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.5)
    _all_workers(server, 2)


def test_a_hung_worker_delays_the_answer_at_most_the_timeout_and_a_killed_one_never_blocks(
    model_dir: Path, tmp_path: Path
) -> None:
    import os
    import signal

    server = _start(model_dir, tmp_path, 2, OPENKWS_WORKER_SYNC_TIMEOUT_S="1")
    try:
        _all_workers(server, 2)
        pids = _worker_pids(server)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGSTOP)  # alive, serving, never syncing
        try:
            r = _write("POST", server.url + "/v1/keywords", json={"text": "hey jarvis"})
            assert r.status_code == 201, r.text  # answered, though one worker lags
            assert r.headers[SYNC] == "timeout", r.headers
            hung = r.headers["x-openkws-sync-pending"]
            assert hung != r.headers[WORKER], r.headers
        finally:
            os.kill(pids[0], signal.SIGCONT)
        kid = r.json()["id"]
        log = server.log_path.read_text()
        assert f"POST /v1/keywords acknowledged before worker(s) [{hung}] applied it" in log
        # the resumed worker catches up at its next poll; then it counts again
        deadline = time.monotonic() + READY_S
        while asyncio.run(_open_on(server.url, hung, [kid]))["type"] != "ready":
            assert time.monotonic() < deadline, server.log_tail()
        os.kill(pids[0], signal.SIGKILL)
        r = _write("POST", server.url + "/v1/keywords", json={"text": "lights on"})
        assert r.status_code == 201 and r.headers[SYNC] in ("ok", "timeout"), (r.text, r.headers)
        new = r.json()["id"]
        _restarted(server)  # the killed worker rebuilds its index from the store
        for w in ("0", "1"):
            assert asyncio.run(_open_on(server.url, w, [kid, new]))["type"] == "ready", w
        r = httpx.delete(f"{server.url}/v1/keywords/{new}", timeout=120)
        assert r.status_code == 204 and r.headers[SYNC] == "ok", r.headers  # the new worker counts again
    finally:
        assert server.terminate(timeout=120) in (0, 1), server.log_tail()
    log = server.log_path.read_text()
    assert f"(pid {pids[0]}) exited with -9; restarting it" in log

"""``openkws serve --workers 2``: two engine processes behind one port share one registry; a keyword
enrolled through one worker is detected by a stream that another worker serves."""

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

    from openkws.server.app import SqliteVersion

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
    server = ServerProcess(
        model_dir, tmp_path / "data", tmp_path / "server.log", env={"OPENKWS_WORKERS": "2"}, log_level="info"
    )
    server.start()
    try:
        server.wait_ready(timeout=900)  # two model loads; slow on a busy machine
        workers: set[str] = set()
        deadline = time.monotonic() + 900
        while len(workers) < 2:  # both workers up (each new connection may land on either)
            assert time.monotonic() < deadline, server.log_tail()
            try:
                r = httpx.get(server.url + "/readyz", timeout=10)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                workers.add(r.headers[WORKER])
        r = httpx.post(
            server.url + "/v1/keywords",
            json={"text": "hey jarvis", "threshold": 0.0},  # untrained model: let any window fire
            timeout=60,
        )
        assert r.status_code == 201, r.text
        kid, enrolled_on = r.json()["id"], r.headers[WORKER]
        # every worker's index has it (SQLite: a worker re-reads the store when another one commits)
        seen: dict[str, int] = {}
        while set(seen) != workers or any(v != 1 for v in seen.values()):
            assert time.monotonic() < deadline, (seen, server.log_tail())
            r = httpx.get(server.url + "/readyz", timeout=10)
            seen[r.headers[WORKER]] = r.json()["keywords"]
        speech = np.concatenate([silence(0.5), synth("hey jarvis", VOICE), silence(1.0)])
        worker, msgs = asyncio.run(_stream_on_other_worker(server.url, enrolled_on, pcm16(speech)))
        assert worker != enrolled_on
        assert msgs[-1]["type"] == "summary", msgs[-1]
        assert any(m["type"] == "detection" and m["keyword_id"] == kid for m in msgs), msgs
    finally:
        assert server.terminate(timeout=120) == 0, server.log_tail()
    log = server.log_path.read_text()
    assert "2 workers on 127.0.0.1" in log and "[worker 1]" in log

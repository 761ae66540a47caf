"""Read-your-writes across ``--workers`` (server/worker_sync.py), piece by piece: the shared board
across a real spawned process, the nudges over real UNIX datagram sockets, the acknowledgement
middleware on a real app, and the new settings' bad values. The whole multi-worker server is in
test_workers.py."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from openkws.cli import app as cli
from openkws.server.app import create_app
from openkws.server.worker_sync import WorkerBoard, is_write
from openkws.settings import Settings, usable_cores
from openkws.text import G2P

SPAWN = multiprocessing.get_context("spawn")


def _child_publishes(board: WorkerBoard, me: int) -> None:
    board.join(me)
    board.publish(me, board.snapshot())


@pytest.fixture
def board() -> Any:
    b = WorkerBoard(3, SPAWN)
    yield b
    b.close()


def test_board_counts_writes_and_waits_only_for_serving_workers(board: WorkerBoard) -> None:
    assert board.pending(0, 1) == []  # nobody serving yet: nobody to wait for
    board.join(1)
    board.join(2)
    w = board.take(0)
    assert w == 1 and board.pending(0, w) == [1, 2]
    snap = board.snapshot()
    board.publish(1, snap)
    assert board.pending(0, w) == [2]
    board.leave(2)  # dead or shutting down: no longer waited for
    assert board.pending(0, w) == []
    w2 = board.take(0)
    assert w2 == 2 and board.pending(0, w2) == [1]  # a publish before the write does not count
    board.join(2)  # a stale row of an earlier incarnation never covers a newer write
    assert board.pending(0, w2) == [1, 2]


def test_board_is_shared_with_a_spawned_worker(board: WorkerBoard) -> None:
    w = board.take(0)
    p = SPAWN.Process(target=_child_publishes, args=(board, 2))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    assert board.serving[2] == 1 and board.pending(0, w) == []  # the child read write 1 and published it


def test_board_refuses_no_workers() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        WorkerBoard(0, SPAWN)


def test_nudges_wake_a_worker_and_a_late_one_is_reported(board: WorkerBoard) -> None:
    from openkws.server.worker_sync import Nudges

    async def run() -> None:
        a, b = Nudges(board, 0), Nudges(board, 1)
        try:
            assert not await b.wait(0.01)  # nothing sent
            a.send([1, 2])  # worker 2 has no socket: ignored
            assert await b.wait(30.0)
            board.join(1)
            number = board.take(0)
            assert await a.acknowledge(number, 0.05) == [1]  # serving, never applied: late

            async def apply_when_nudged() -> None:
                assert await b.wait(30.0)  # acknowledge() nudges the late worker
                board.publish(1, board.snapshot())

            waiter = asyncio.create_task(apply_when_nudged())
            assert await a.acknowledge(board.take(0), 30.0) == []
            await waiter
        finally:
            a.close()
            b.close()

    asyncio.run(run())


def test_only_keyword_writes_wait() -> None:
    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path}

    assert is_write(scope("POST", "/v1/keywords")) and is_write(scope("POST", "/v1/keywords/batch"))
    assert is_write(scope("PATCH", "/v1/keywords/3")) and is_write(scope("DELETE", "/v1/keywords/3"))
    assert not is_write(scope("GET", "/v1/keywords")) and not is_write(scope("POST", "/v1/detect"))
    assert not is_write(scope("POST", "/v1/keywordsx")) and not is_write({"type": "websocket", "path": "/"})


def test_a_write_waits_for_the_workers_and_says_so_on_timeout(
    make_settings: Callable[..., Settings], g2p: G2P, board: WorkerBoard, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(worker_id=0, worker_sync_timeout_s=0.05), g2p=g2p, board=board)
    with TestClient(app) as c:
        assert board.serving[0] == 1  # joined, and in step, before serving
        r = c.post("/v1/keywords", json={"text": "hey jarvis"})
        assert r.status_code == 201 and r.headers["x-openkws-sync"] == "ok"  # no other worker serving
        assert "x-openkws-sync-pending" not in r.headers
        board.join(2)  # serving, but it never syncs (hung)
        with caplog.at_level(logging.WARNING, logger="openkws"):
            r = c.post("/v1/keywords", json={"text": "lights on"})
        assert r.status_code == 201, r.text  # the write is durable: it still succeeds
        assert r.headers["x-openkws-sync"] == "timeout" and r.headers["x-openkws-sync-pending"] == "2"
        assert "acknowledged before worker(s) [2] applied it" in caplog.text
        metrics = c.get("/metrics").text
        assert "openkws_worker_sync_timeouts_total 1.0" in metrics
        assert "openkws_worker_sync_seconds_count 2.0" in metrics
        kid = r.json()["id"]
        r = c.delete(f"/v1/keywords/{kid}")
        assert r.status_code == 204 and r.headers["x-openkws-sync"] == "timeout"
        r = c.delete(f"/v1/keywords/{kid}")  # a failed write is answered at once, unmarked
        assert r.status_code == 404 and "x-openkws-sync" not in r.headers
        assert "x-openkws-sync" not in c.get("/v1/keywords").headers
    assert board.serving[0] == 0  # left at shutdown


def test_single_process_has_no_acknowledgement_header(client: TestClient) -> None:
    r = client.post("/v1/keywords", json={"text": "hey jarvis"})
    assert r.status_code == 201 and "x-openkws-sync" not in r.headers


def test_default_is_one_worker_per_usable_core(tmp_path: Path) -> None:
    assert Settings().workers == 0
    assert Settings(device="cpu").resolved_workers() == usable_cores()
    assert Settings(device="cuda").resolved_workers() == 1  # one process feeds the GPU
    assert Settings(workers=1).resolved_workers() == 1
    assert Settings().worker_sync_timeout_s == 2.0


@pytest.mark.parametrize("bad", [0, -1, 61, "soon"])
def test_bad_sync_timeout_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="worker_sync_timeout_s"):
        Settings(worker_sync_timeout_s=bad)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OPENKWS_WORKER_SYNC_TIMEOUT_S": "0"}, "OPENKWS_WORKER_SYNC_TIMEOUT_S='0': Input should be greater than 0"),
        ({"OPENKWS_WORKER_SYNC_TIMEOUT_S": "soon"}, "OPENKWS_WORKER_SYNC_TIMEOUT_S='soon': Input should be a valid number"),
        ({"OPENKWS_WORKERS": "-2"}, "OPENKWS_WORKERS='-2': Input should be greater than or equal to 0"),
    ],
)  # fmt: skip
def test_serve_names_the_bad_variable(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path)], env=env)
    assert r.exit_code == 2, r.output
    assert "error: invalid setting " + expected in " ".join(r.output.split())


def check_read_your_writes(a: TestClient, b: TestClient) -> None:
    """Two workers' apps on one board and one store: each write through ``a`` is in ``b``'s index the
    moment ``a`` answers (no waiting here): enroll, threshold change, delete."""
    index = b.app.state.openkws.spotter.index  # type: ignore[attr-defined]
    for i in range(5):
        r = a.post("/v1/keywords", json={"text": f"turn on lamp {i}", "threshold": 0.5})
        assert r.status_code == 201 and r.headers["x-openkws-sync"] == "ok", r.headers
        kid = r.json()["id"]
        assert index.tenant("default").by_id[kid].threshold == pytest.approx(0.5)
        r = a.patch(f"/v1/keywords/{kid}", json={"threshold": 0.8})
        assert r.status_code == 200 and r.headers["x-openkws-sync"] == "ok"
        assert index.tenant("default").by_id[kid].threshold == pytest.approx(0.8)
        r = a.delete(f"/v1/keywords/{kid}")
        assert r.status_code == 204 and r.headers["x-openkws-sync"] == "ok"
        assert kid not in index.tenant("default")


def test_two_workers_on_sqlite_read_each_others_writes(
    make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    board = WorkerBoard(2, SPAWN)
    try:
        # a poll far longer than the test: only the nudge and the acknowledgement explain what b sees
        a_app = create_app(make_settings(worker_id=0, sync_interval_s=600.0), g2p=g2p, board=board)
        b_app = create_app(make_settings(worker_id=1, sync_interval_s=600.0), g2p=g2p, board=board)
        with TestClient(a_app) as a, TestClient(b_app) as b:
            check_read_your_writes(a, b)
            check_read_your_writes(b, a)
    finally:
        board.close()

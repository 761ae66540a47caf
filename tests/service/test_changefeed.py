"""The PostgreSQL change feed (openkws.keywords.changefeed) on a real server: every registry write is
logged in its transaction, replicas apply each other's writes through LISTEN/NOTIFY well inside
the poll interval, and catch up after a dropped connection or a pruned log."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from openkws.keywords.changefeed import StoreFollower
from openkws.keywords.changelog import ChangeLog, ChangeTable, install_change_log
from openkws.keywords.schema import KeywordTable
from openkws.keywords.store import KeywordStore, NewKeyword
from openkws.server.app import create_app
from openkws.server.auth import ApiKeys
from openkws.server.detection_counts import DetectionCounts
from openkws.server.metrics import Metrics
from openkws.server.state import load_engine
from openkws.settings import Settings
from openkws.text import G2P
from tests.deploy.postgres import PostgresUnavailable, postgres_server

POLL_S = 30.0  # the fallback read: far longer than any wait below, so only NOTIFY explains a fast apply


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def url(pg: str) -> str:
    """A clean registry for each test."""
    store = KeywordStore(Settings(database_url=pg).resolved_database_url())
    with store.engine.begin() as conn:
        for table in ("registry_changes", "keywords", "api_keys"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    store.close()
    return Settings(database_url=pg).resolved_database_url()


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - t0


def _log(store: KeywordStore) -> list[tuple[str, str, str, str]]:
    return [(c.tenant, c.kind, c.op, c.ref) for c in ChangeLog(store).since(0)]


def test_every_registry_write_is_logged_in_its_transaction(url: str) -> None:
    store = KeywordStore(url)
    kw, _ = store.add("acme", NewKeyword("hey jarvis", ("HH", "EY"), 0.5, None))
    store.add("acme", NewKeyword("hey jarvis", ("HH", "EY"), 0.9, None))  # idempotent: no write, no change
    store.set_threshold("acme", kw.id, 0.7)
    keys = ApiKeys(store)
    key = keys.create("acme", "stream")
    keys.revoke(key.key_id)
    store.delete("acme", kw.id)
    assert _log(store) == [
        ("acme", "keyword", "insert", str(kw.id)),
        ("acme", "keyword", "update", str(kw.id)),
        ("acme", "api_key", "insert", key.key_id),
        ("acme", "api_key", "update", key.key_id),
        ("acme", "keyword", "delete", str(kw.id)),
    ]
    seqs = [c.seq for c in ChangeLog(store).since(0)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # A rolled-back write leaves no change behind (the row is written in the same transaction).
    before = ChangeLog(store).last_seq()
    with store.sessions() as s:
        s.add(
            KeywordTable(
                tenant="acme",
                text="rolled back",
                phonemes="R",
                threshold=0.5,
                meta=None,
                created_at=kw.created_at,
                updated_at=kw.created_at,
            )
        )
        s.flush()
        assert s.scalar(text("SELECT max(seq) FROM registry_changes")) > before
        s.rollback()
    assert ChangeLog(store).last_seq() == before
    store.close()


@dataclass
class _Shaped:
    """A LoggedStore with its own sessionmaker over a shared engine: a new Session class per store."""

    engine: Any
    sessions: Any
    backend: str = "postgresql"


def test_a_store_logs_after_another_was_collected(url: str) -> None:
    """SQLAlchemy's event.contains keys its registry by id() of a sessionmaker's Session class and
    keeps the key after that class is collected; the next class at the same address read as "already
    listening", so install_change_log skipped it and that store's writes went unlogged (a CI failure,
    600 tests in). Fresh sessionmakers, collected in turn, reuse an address within a few rounds."""
    engine = KeywordStore(url).engine
    for i in range(20):
        store = _Shaped(engine, sessionmaker(engine, expire_on_commit=False))
        install_change_log(store)
        before = ChangeLog(store).last_seq()
        with store.sessions.begin() as s:
            now = dt.datetime.now(dt.timezone.utc)
            s.add(
                KeywordTable(
                    tenant="acme",
                    text=f"w{i}",
                    phonemes="W",
                    threshold=0.5,
                    meta=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        assert ChangeLog(store).last_seq() > before, f"store {i}: its write was not logged"
        del store, s
        gc.collect()
    engine.dispose()


def test_change_feed_needs_postgres_and_a_positive_interval(tmp_path: Any) -> None:
    store = KeywordStore(f"sqlite:///{tmp_path / 'k.db'}")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        install_change_log(store)
    assert "registry_changes" not in store.engine.dialect.get_table_names(store.engine.connect())
    with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
        StoreFollower(None, 0.0)  # type: ignore[arg-type]


def _index(client: TestClient) -> Any:
    return client.app.state.openkws.spotter.index  # type: ignore[attr-defined]


def test_replicas_apply_each_others_writes_through_notify(
    url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    settings = make_settings(database_url=url, sync_interval_s=POLL_S)
    with TestClient(create_app(settings, g2p=g2p)) as a, TestClient(create_app(settings, g2p=g2p)) as b:
        ib = _index(b)
        kid = a.post("/v1/keywords", json={"text": "hey jarvis", "threshold": 0.5}).json()["id"]
        added = _wait(lambda: kid in ib.tenant("default"), 1.0, "enroll on A reaches B")
        a.patch(f"/v1/keywords/{kid}", json={"threshold": 0.9})
        _wait(lambda: ib.tenant("default").by_id[kid].threshold == pytest.approx(0.9), 1.0, "threshold on B")
        b.delete(f"/v1/keywords/{kid}")
        removed = _wait(lambda: kid not in _index(a).tenant("default"), 1.0, "delete on B reaches A")
        metrics = b.get("/metrics").text
        assert "openkws_changefeed_listening 1.0" in metrics and "openkws_changefeed_sequence" in metrics
        assert b.get("/readyz").json()["keywords"] == 0
    print(
        f"change feed: enroll applied on the other replica in {added * 1000:.0f} ms, delete in "
        f"{removed * 1000:.0f} ms"
    )


@contextlib.contextmanager
def _follower(
    url: str, make_settings: Callable[..., Settings], g2p: G2P, poll_s: float = POLL_S
) -> Iterator[tuple[Any, StoreFollower]]:
    settings = make_settings(database_url=url)
    _spotter, store, svc = load_engine(settings, Metrics(), DetectionCounts(), g2p)
    f = StoreFollower(svc, poll_s, reconnect_s=0.2)
    f.start_from_store()
    try:
        yield svc, f
    finally:
        f.stop()
        store.close()


def test_follower_reconnects_and_catches_up_after_a_dropped_connection(
    url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    with _follower(url, make_settings, g2p) as (svc, f):
        f.start()
        _wait(lambda: f.metrics.listening._value.get() == 1, 10, "LISTEN connected")
        writer = KeywordStore(url)
        # Drop the follower's LISTEN connection, then write while it is away: no NOTIFY reaches it.
        with writer.engine.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            ).all()
        assert killed
        kw, _ = writer.add("default", NewKeyword("play music", ("P", "L", "EY"), 0.5, None))
        took = _wait(lambda: kw.id in svc.spotter.index.tenant("default"), 5.0, "catch-up after reconnect")
        assert took < POLL_S
        writer.close()


def test_incremental_read_without_notifications_and_rebuild_after_pruning(
    url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    with _follower(url, make_settings, g2p) as (svc, f):  # not started: catch_up() is the periodic read
        writer = KeywordStore(url)
        a, _ = writer.add("default", NewKeyword("hey jarvis", ("HH", "EY"), 0.5, None))
        b, _ = writer.add("t2", NewKeyword("stop", ("S", "T", "AA", "P"), 0.5, None))
        got = f.catch_up()
        assert (got.changes, got.added) == (2, 2) and f.seq == ChangeLog(writer).last_seq()
        assert f.catch_up().changes == 0  # nothing new: nothing read twice
        writer.delete("default", a.id)
        writer.set_threshold("t2", b.id, 0.8)
        got = f.catch_up()
        assert (got.removed, got.updated) == (1, 1) and a.id not in svc.spotter.index.tenant("default")
        # Changes this replica never saw are pruned from the log: it rebuilds from the store instead.
        c, _ = writer.add("default", NewKeyword("okay computer", ("OW", "K", "EY"), 0.5, None))
        writer.add("default", NewKeyword("lights on", ("L", "AY", "T", "S"), 0.5, None))
        with writer.engine.begin() as conn:
            conn.execute(
                ChangeTable.__table__.delete().where(ChangeTable.seq <= ChangeLog(writer).last_seq() - 1)
            )
        got = f.catch_up()
        assert got.rebuilt and c.id in svc.spotter.index.tenant("default")
        assert f.metrics.rebuilds._value.get() == 1
        writer.close()


def test_a_lost_notification_is_covered_by_the_periodic_read(
    url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    import datetime as dt

    from sqlalchemy import insert

    with _follower(url, make_settings, g2p, poll_s=0.5) as (svc, f):
        f.start()
        _wait(lambda: f.metrics.listening._value.get() == 1, 10, "LISTEN connected")
        writer = KeywordStore(url)
        now = dt.datetime.now(dt.timezone.utc)
        # A write whose NOTIFY never arrives: rows inserted with Core, outside the logging session.
        with writer.engine.begin() as conn:
            kid = conn.execute(
                insert(KeywordTable)
                .values(
                    tenant="default",
                    text="lost note",
                    phonemes="L AO S T",
                    threshold=0.5,
                    meta=None,
                    created_at=now,
                    updated_at=now,
                    proxy_mode="text",
                )
                .returning(KeywordTable.id)
            ).scalar_one()
            conn.execute(
                insert(ChangeTable).values(tenant="default", kind="keyword", op="insert", ref=str(kid))
            )
        took = _wait(lambda: kid in svc.spotter.index.tenant("default"), 5.0, "periodic read applies it")
        assert took > 0.05, "applied before any read could have run: was it notified after all?"
        writer.close()


def test_workers_on_postgres_answer_a_write_once_every_worker_applied_it(
    url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    """``--workers`` on PostgreSQL: the nudged follower catches up before the write is answered."""
    import multiprocessing

    from openkws.server.worker_sync import WorkerBoard
    from tests.service.test_worker_sync import check_read_your_writes

    board = WorkerBoard(2, multiprocessing.get_context("spawn"))
    try:
        apps = [
            create_app(
                make_settings(database_url=url, sync_interval_s=POLL_S, worker_id=i), g2p=g2p, board=board
            )
            for i in range(2)
        ]
        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            check_read_your_writes(a, b)
            check_read_your_writes(b, a)
    finally:
        board.close()

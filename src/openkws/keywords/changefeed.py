"""The registry's change feed: replicas sharing one PostgreSQL registry follow each other's writes
incrementally instead of re-reading every keyword.

Writer side (:func:`install_change_log`, on every PostgreSQL :class:`~openkws.keywords.store.KeywordStore`):
every flush that inserts, updates or deletes a keyword or an API key appends one row per object to
``registry_changes`` in the same transaction, and sends ``NOTIFY openkws_registry`` (PostgreSQL
delivers it at COMMIT, and only if the transaction commits). The rows take a transaction-scoped
advisory lock first, so sequence numbers are handed out in commit order: a reader that has seen
sequence ``n`` has seen every committed change below ``n`` (without the lock a transaction holding
sequence 10 could commit after one holding 11, and a follower at 11 would never read 10).

Reader side (:class:`StoreFollower`, one thread per replica): ``LISTEN`` on its own connection;
every notification, and every ``poll_interval_s`` without one (the fallback for lost notifications
or a listener that cannot connect), reads the changes after the last sequence it applied and
applies them to the index. A change names a keyword; the follower reads that keyword's current row
and adds, re-thresholds or removes it, so applying a change twice, or out of date, is harmless.
After a dropped connection it reconnects and catches up from its last sequence; if the log was
pruned past that sequence it rebuilds from the store (:meth:`KeywordRegistry.sync`).

SQLite (the single-node default) has no change log: nothing here runs for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import BigInteger, DateTime, Integer, String, delete, func, insert, inspect, select, text
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from openkws.engine.index import KeywordEntry
from openkws.engine.spotter import Spotter
from openkws.keywords.availability import StoreUnavailable, is_unavailable, short_error
from openkws.keywords.store import (
    MAX_TENANT_CHARS,
    ApiKeyTable,
    KeywordRecord,
    KeywordStore,
    KeywordTable,
    _record,
)

log = logging.getLogger("openkws")

CHANNEL = "openkws_registry"
# pg_advisory_xact_lock key that orders change-log writers ("okws" in ASCII).
LOCK_KEY = 0x6F6B7773
WAKE_S = 0.5  # how often a waiting follower checks for stop()
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Registry(Protocol):
    """What the follower needs of the keyword registry (:mod:`openkws.keywords`): the store, the
    index (through the spotter), its write lock, entry building and a full re-sync."""

    store: KeywordStore
    spotter: Spotter
    _write: threading.Lock

    def _entries(self, records: Sequence[KeywordRecord]) -> list[KeywordEntry]: ...

    def sync(self) -> tuple[int, int, int]: ...


class _ChangeBase(DeclarativeBase):  # its own metadata: SQLite stores never get this table
    pass


class ChangeTable(_ChangeBase):
    __tablename__ = "registry_changes"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    kind: Mapped[str] = mapped_column(String(16))  # "keyword" | "api_key"
    op: Mapped[str] = mapped_column(String(8))  # "insert" | "update" | "delete"
    ref: Mapped[str] = mapped_column(String(32))  # keyword id or API key id
    # clock_timestamp(), not now(): now() is the transaction's start, and the lag metric wants the write
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


@dataclass(frozen=True)
class Change:
    seq: int
    tenant: str
    kind: str
    op: str
    ref: str
    at: dt.datetime


def _changes_of(session: Session) -> list[dict[str, str]]:
    """One change-log row per keyword or API key this flush writes (net changes only)."""
    rows: list[dict[str, str]] = []
    for op, objs in (("insert", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objs:
            if op == "update" and not session.is_modified(obj, include_collections=False):
                continue
            if isinstance(obj, KeywordTable):
                rows.append({"tenant": obj.tenant, "kind": "keyword", "op": op, "ref": str(obj.id)})
            elif isinstance(obj, ApiKeyTable):
                rows.append({"tenant": obj.tenant, "kind": "api_key", "op": op, "ref": obj.key_id})
    return rows


def _after_flush(session: Session, _ctx: Any) -> None:
    rows = _changes_of(session)
    if not rows:
        return
    conn = session.connection()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})  # held until COMMIT/ROLLBACK
    conn.execute(insert(ChangeTable), rows)
    conn.execute(text("SELECT pg_notify(:ch, '')"), {"ch": CHANNEL})  # sent at COMMIT, dropped on ROLLBACK


def create_change_table(conn: Connection) -> None:
    """Create ``registry_changes`` if absent; called inside the store's locked schema transaction
    (:func:`openkws.keywords.store.create_schema`), so concurrent replicas do not race."""
    _ChangeBase.metadata.create_all(conn)


def install_change_log(store: KeywordStore) -> None:
    """Log every write made through ``store``'s sessions (its schema holds ``registry_changes``)."""
    if store.backend != "postgresql":
        raise ValueError(f"the change feed needs PostgreSQL (LISTEN/NOTIFY); this store is {store.backend}")
    if not inspect(store.engine).has_table(ChangeTable.__tablename__):
        with store.engine.begin() as conn:  # a store opened before the table existed (tests)
            create_change_table(conn)
    from sqlalchemy import event

    if not event.contains(store.sessions, "after_flush", _after_flush):
        event.listen(store.sessions, "after_flush", _after_flush)


class ChangeLog:
    """Reads (and prunes) ``registry_changes``. Synchronous: call from worker threads."""

    def __init__(self, store: KeywordStore) -> None:
        self.store = store

    def last_seq(self) -> int:
        with self.store.sessions() as s:
            return int(s.scalar(select(func.max(ChangeTable.seq))) or 0)

    def first_seq(self) -> int:
        with self.store.sessions() as s:
            return int(s.scalar(select(func.min(ChangeTable.seq))) or 0)

    def since(self, seq: int, limit: int = 5000) -> list[Change]:
        q = select(ChangeTable).where(ChangeTable.seq > seq).order_by(ChangeTable.seq).limit(limit)
        with self.store.sessions() as s:
            return [Change(r.seq, r.tenant, r.kind, r.op, r.ref, r.at) for r in s.scalars(q)]

    def prune(self, older_than_s: float) -> int:
        """Drop changes older than ``older_than_s`` (a follower that far behind rebuilds instead)."""
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than_s)
        with self.store.sessions.begin() as s:
            res = cast(CursorResult[Any], s.execute(delete(ChangeTable).where(ChangeTable.at < cutoff)))
            return int(res.rowcount or 0)


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        self.seq = Gauge(
            "openkws_changefeed_sequence", "Last registry change applied to this replica's index", registry=r
        )
        self.applied = Counter(
            "openkws_changefeed_changes_total",
            "Registry changes read from the change log",
            ["kind"],
            registry=r,
        )
        self.lag = Histogram(
            "openkws_changefeed_lag_seconds",
            "Commit of a registry change to its application here (database clock to local clock)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.rebuilds = Counter(
            "openkws_changefeed_rebuilds_total", "Full index rebuilds (log pruned past us)", registry=r
        )
        self.listening = Gauge("openkws_changefeed_listening", "1 while LISTEN is connected", registry=r)


@dataclass(frozen=True)
class Applied:
    changes: int
    added: int = 0
    removed: int = 0
    updated: int = 0
    rebuilt: bool = False


class StoreFollower:
    """Applies the change log to a replica's index: LISTEN/NOTIFY, with periodic incremental reads."""

    def __init__(
        self,
        keywords: Registry,
        poll_interval_s: float = 5.0,
        registry: CollectorRegistry | None = None,
        on_applied: Callable[[Applied], None] | None = None,
        retention_s: float = 86_400.0,
        reconnect_s: float = 1.0,
        on_key_change: Callable[[str], None] | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self.keywords = keywords
        self.log = ChangeLog(keywords.store)
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self.reconnect_s = reconnect_s
        self.on_applied = on_applied
        self.on_key_change = on_key_change  # drops a revoked or changed API key from the key cache
        self.metrics = FeedMetrics(registry)
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self._listen_failing = False  # logs an outage once

    # -- applying ---------------------------------------------------------------------------------
    def start_from_store(self) -> Applied:
        """Position at the log's head and bring the index in step with the store (start-up)."""
        self.seq = self.log.last_seq()  # read first: a write after this is in the log and re-applied
        added, removed, updated = self.keywords.sync()
        self.metrics.seq.set(self.seq)
        return Applied(0, added, removed, updated, rebuilt=True)

    def catch_up(self) -> Applied:
        """Apply every change after the last one applied; returns what changed in the index."""
        total = Applied(0)
        while True:
            changes = self.log.since(self.seq)
            if not changes:
                return total
            if changes[0].seq > self.seq + 1 and self.seq > 0 and self.log.first_seq() > self.seq + 1:
                log.warning(
                    "change log pruned past sequence %d; rebuilding the index from the store", self.seq
                )
                self.metrics.rebuilds.inc()
                got = self.start_from_store()
                return _sum(total, got)
            got = self._apply(changes)
            self.seq = changes[-1].seq
            self.metrics.seq.set(self.seq)
            total = _sum(total, got)
            if self.on_applied is not None and (got.added or got.removed or got.updated):
                self.on_applied(got)

    def _apply(self, changes: Sequence[Change]) -> Applied:
        now = dt.datetime.now(dt.timezone.utc)
        keyword_ids: dict[int, str] = {}
        for c in changes:
            self.metrics.applied.labels(c.kind).inc()
            self.metrics.lag.observe(max(0.0, (now - c.at).total_seconds()))
            if c.kind == "keyword":
                keyword_ids[int(c.ref)] = c.tenant
            elif self.on_key_change is not None:  # a revocation on another replica (or the CLI)
                self.on_key_change(c.ref)
        if not keyword_ids:
            return Applied(len(changes))
        svc = self.keywords
        index = svc.spotter.index
        # The service's write lock: a local enrollment or delete and this update never interleave.
        with svc._write:
            with svc.store.sessions() as s:
                rows = {
                    r.id: _record(r)
                    for r in s.scalars(select(KeywordTable).where(KeywordTable.id.in_(list(keyword_ids))))
                }
            added, removed, updated = [], 0, 0
            gone: dict[str, list[int]] = {}
            thresholds: dict[str, dict[int, float]] = {}
            for kid, tenant in keyword_ids.items():
                row = rows.get(kid)
                if row is None:
                    if kid in index.tenant(tenant):
                        gone.setdefault(tenant, []).append(kid)
                    continue
                have = index.tenant(row.tenant).by_id.get(kid)
                if have is None:
                    added.append(row)
                elif abs(have.threshold - row.threshold) > 1e-9:
                    thresholds.setdefault(row.tenant, {})[kid] = row.threshold
            for tenant, ids in gone.items():
                index.remove(tenant, ids)
                removed += len(ids)
            if added:
                index.upsert(svc._entries(added))
            for tenant, upd in thresholds.items():
                index.set_thresholds(tenant, upd)
                updated += len(upd)
        return Applied(len(changes), len(added), removed, updated)

    # -- the follower thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("follower already started")
        self._thread = threading.Thread(target=self._run, name="openkws-changefeed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()  # the thread sees it within WAKE_S
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _listen_conninfo(self) -> str:
        url = self.keywords.store.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._listen_conninfo(), autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.metrics.listening.set(1)
                    if self._listen_failing:
                        log.info("change feed: listening again")
                    self._listen_failing = False
                    self._safe_catch_up()  # whatever was written while we were not listening
                    next_poll = time.monotonic() + self.poll_interval_s
                    while not self._stop.is_set():
                        # Wakes at a notification, or every WAKE_S to notice stop(); reads the log on a
                        # notification or every poll_interval_s (the fallback for lost notifications).
                        notified = False
                        for _ in conn.notifies(timeout=WAKE_S, stop_after=1):
                            notified = True
                        if self._stop.is_set():
                            break
                        if notified or time.monotonic() >= next_poll:
                            while conn.pgconn.notifies() is not None:  # coalesce a burst into one read
                                pass
                            self._safe_catch_up()
                            next_poll = time.monotonic() + self.poll_interval_s
            except Exception as e:
                if self._stop.is_set():
                    break
                self.metrics.listening.set(0)
                if not self._listen_failing:  # once per outage, not at every reconnect attempt
                    log.warning(
                        "change feed: LISTEN connection failed (%s); retrying every %.1f s, the index "
                        "keeps its last snapshot",
                        " ".join(str(e).split())[:200],
                        self.reconnect_s,
                    )
                self._listen_failing = True
                self._poll_until_reconnect()
            finally:
                self.metrics.listening.set(0)

    def _poll_until_reconnect(self) -> None:
        """Without a LISTEN connection: one incremental read, then retry the connection."""
        deadline = time.monotonic() + max(self.reconnect_s, 0.05)
        self._safe_catch_up()
        self._stop.wait(max(0.0, deadline - time.monotonic()))

    def _safe_catch_up(self) -> None:
        try:
            self.catch_up()
            if time.monotonic() - self._last_prune > 600:
                self._last_prune = time.monotonic()
                self.log.prune(self.retention_s)
        except Exception as e:  # a database blip: the next notification or poll retries from self.seq
            if not (is_unavailable(e) or isinstance(e, StoreUnavailable)):
                log.exception("change feed: catching up from sequence %d failed", self.seq)
            elif not self._listen_failing:
                log.warning(
                    "change feed: database unavailable (%s); will catch up when it is back", short_error(e)
                )


async def follow_change_feed(
    registry: Registry,
    poll_interval_s: float,
    metrics: CollectorRegistry | None,
    on_applied: Callable[[], None] | None = None,
    on_key_change: Callable[[str], None] | None = None,
) -> None:
    """Run a :class:`StoreFollower` for an app until cancelled (the app's shutdown)."""
    loop = asyncio.get_running_loop()
    follower = StoreFollower(
        registry,
        poll_interval_s,
        metrics,
        on_applied=None if on_applied is None else lambda _a: on_applied(),
        on_key_change=on_key_change,
    )
    await loop.run_in_executor(None, follower.start_from_store)
    if on_applied is not None:
        on_applied()
    follower.start()
    try:
        await asyncio.Event().wait()
    finally:
        await loop.run_in_executor(None, follower.stop)


def _sum(a: Applied, b: Applied) -> Applied:
    return Applied(
        a.changes + b.changes,
        a.added + b.added,
        a.removed + b.removed,
        a.updated + b.updated,
        a.rebuilt or b.rebuilt,
    )

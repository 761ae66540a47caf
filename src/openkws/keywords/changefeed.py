"""The registry's change feed: replicas sharing one PostgreSQL registry follow each other's writes
incrementally instead of re-reading every keyword.

Writer side (:mod:`openkws.keywords.changelog`, installed by every PostgreSQL
:class:`~openkws.keywords.store.KeywordStore`): every write of a keyword or an API key appends a row
to ``registry_changes`` in its transaction and notifies ``openkws_registry`` at COMMIT, with
sequence numbers in commit order.

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
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import select

from openkws.engine.index import KeywordEntry
from openkws.engine.spotter import Spotter
from openkws.keywords.availability import StoreUnavailable, is_unavailable, short_error
from openkws.keywords.changelog import CHANNEL, Change, ChangeLog
from openkws.keywords.schema import KeywordTable
from openkws.keywords.store import KeywordRecord, KeywordStore, _record

log = logging.getLogger("openkws")

WAKE_S = 0.5  # how often a waiting follower checks for stop()
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Registry(Protocol):
    """What the follower needs of the keyword registry (:mod:`openkws.keywords`): the store, the
    index (through the spotter), its write lock, enrolling stored keywords and a full re-sync."""

    store: KeywordStore
    spotter: Spotter
    _write: threading.Lock

    def index_records(
        self, records: Sequence[KeywordRecord], replace: bool = False
    ) -> list[KeywordEntry]: ...

    def sync(self) -> tuple[int, int, int]: ...


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        # --workers: the laggard's sequence (every worker has applied up to it), and 1 only while
        # every worker listens (openkws.server.metrics_shared)
        self.seq = Gauge(
            "openkws_changefeed_sequence",
            "Last registry change applied to this replica's index",
            multiprocess_mode="livemin",
            registry=r,
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
        self.listening = Gauge(
            "openkws_changefeed_listening",
            "1 while LISTEN is connected",
            multiprocess_mode="livemin",
            registry=r,
        )


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
        # catch_up runs on the follower thread and, for a --workers nudge, on the app's: one at a time
        self._catching = threading.RLock()
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
        with self._catching:
            return self._catch_up()

    def _catch_up(self) -> Applied:
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
                svc.index_records(added)
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
        import psycopg  # lazy: the postgres extra; SQLite deployments never load it

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

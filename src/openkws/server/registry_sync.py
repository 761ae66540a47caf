"""Following the shared keyword registry: replicas and ``--workers`` pick up each other's writes.

PostgreSQL: the change feed (LISTEN/NOTIFY, with an incremental read every ``sync_interval_s`` as
the fallback; see :mod:`openkws.keywords.changefeed`). SQLite: the registry is re-read when ``PRAGMA
data_version`` says another connection committed (asked every 0.1 s), and every ``sync_interval_s``
regardless.

With ``--workers`` (a :class:`~openkws.server.worker_sync.WorkerBoard`), a worker also syncs at once
when nudged, and after each sync publishes which writes its index includes, so that a write is
acknowledged only once every worker has it (:mod:`openkws.server.worker_sync`). Its first sync runs
before the worker serves anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.concurrency import run_in_threadpool

from openkws.keywords.changefeed import StoreFollower
from openkws.server.state import AppState
from openkws.server.worker_sync import Nudges, WorkerBoard

log = logging.getLogger("openkws")

SQLITE_POLL_S = 0.1  # how often a SQLite follower asks whether another connection committed
WORKER_POLL_S = 1.0  # a worker's follower wakes at least this often (sync_interval_s unset)


class SqliteVersion:
    """``PRAGMA data_version`` on a connection of its own: it changes whenever another connection
    (another worker or replica, or this process's pool) commits to the file. A cheap question to ask
    often; the registry is re-read only when the answer changes."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path)
        self.last = self.read()

    def read(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        now = self.read()
        changed, self.last = now != self.last, now
        return changed

    def close(self) -> None:
        self._conn.close()


class _SqliteFollower:
    """Re-reads the store when it changed, every ``full_s`` regardless, or when forced."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        interval = state.settings.sync_interval_s
        self.full_s = interval if interval > 0 else WORKER_POLL_S
        self.version: SqliteVersion | None = None
        path = state.store.engine.url.database
        if path and path != ":memory:":
            try:
                self.version = SqliteVersion(path)
            except sqlite3.Error:
                log.warning("cannot watch %s for other writers; re-reading it every %g s", path, self.full_s)
        self.poll_s = SQLITE_POLL_S if self.version is not None else self.full_s
        self.next_full = asyncio.get_running_loop().time() + self.full_s

    async def start(self) -> None:
        pass

    async def step(self, force: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            changed = self.version is not None and self.version.changed()
        except sqlite3.Error:
            changed = True  # cannot tell: re-read
        if not (force or changed or loop.time() >= self.next_full):
            return
        self.next_full = loop.time() + self.full_s
        added, removed, updated = await run_in_threadpool(self.state.registry.sync)
        if added or removed or updated:
            log.info("store sync: %d added, %d removed, %d thresholds updated", added, removed, updated)

    async def close(self) -> None:
        if self.version is not None:
            self.version.close()


class _FeedFollower:
    """PostgreSQL: the change feed's own thread follows NOTIFY; a forced step catches up here too."""

    def __init__(self, state: AppState) -> None:
        interval = state.settings.sync_interval_s
        self.poll_s = interval if interval > 0 else WORKER_POLL_S
        self.feed = StoreFollower(
            state.registry, self.poll_s, state.metrics.registry, on_key_change=state.api_keys.forget
        )

    async def start(self) -> None:
        await run_in_threadpool(self.feed.start_from_store)
        self.feed.start()

    async def step(self, force: bool) -> None:
        if force:
            await run_in_threadpool(self.feed.catch_up)

    async def close(self) -> None:
        await run_in_threadpool(self.feed.stop)


async def _run(
    follower: _SqliteFollower | _FeedFollower,
    wait: Callable[[float], Awaitable[bool]],
    board: WorkerBoard | None,
    me: int,
    published: tuple[int, ...] = (),
) -> None:
    """Step the follower at each nudge or poll; with a board, publish what the step included. A step
    is forced (the store re-read) whenever a write was counted since the last publish."""
    while True:
        await wait(follower.poll_s)
        snapshot = board.snapshot() if board is not None else ()
        try:
            await follower.step(force=snapshot != published)
        except Exception:  # a database blip must not stop the service; the next round retries
            log.exception("keyword store sync failed")
            continue
        if board is not None:
            board.publish(me, snapshot)
            published = snapshot


@asynccontextmanager
async def following(state: AppState, board: WorkerBoard | None) -> AsyncIterator[Nudges | None]:
    """Follow the registry while the app runs (nothing when ``sync_interval_s`` is 0 and there is
    no board). With a board, this worker joins it, syncs once and publishes before the app serves, and
    leaves it first thing at shutdown; yields its :class:`Nudges` (None without a board)."""
    if board is None and state.settings.sync_interval_s <= 0:
        yield None
        return
    me = state.settings.worker_id or 0
    follower = _FeedFollower(state) if state.store.backend == "postgresql" else _SqliteFollower(state)
    nudges: Nudges | None = None
    task: asyncio.Task[None] | None = None
    try:
        if board is None:  # a replica: exactly as before --workers (the first read happens in the task)

            async def started() -> None:
                await follower.start()
                await _run(follower, _sleep, None, 0)

            task = asyncio.create_task(started())
        else:
            nudges = Nudges(board, me)
            board.join(me)  # before the first snapshot: a writer that saw us absent committed before
            snapshot = board.snapshot()
            await follower.start()
            await follower.step(force=True)
            board.publish(me, snapshot)
            task = asyncio.create_task(_run(follower, nudges.wait, board, me, snapshot))
        yield nudges
    finally:
        if board is not None:
            board.leave(me)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if nudges is not None:
            nudges.close()
        await follower.close()


async def _sleep(seconds: float) -> bool:
    await asyncio.sleep(seconds)
    return False

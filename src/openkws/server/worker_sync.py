"""Read-your-writes across ``--workers``: a keyword write is acknowledged once every live worker's
index has it.

Workers follow the shared registry at their own pace (:mod:`openkws.server.registry_sync`), so an
enrollment acknowledged by one worker used to reach the others 0.1-0.2 s later, and a client that
enrolled and at once opened a stream on another worker could miss its first keyword.

The supervisor makes one :class:`WorkerBoard` (shared memory, no locks) and hands it to every worker:

* ``written[i]``: how many writes worker ``i`` has acknowledged (only worker ``i`` changes it, and its
  restarted successor continues from the value left in shared memory, so the count never goes back);
* ``applied[j][i]``: the value of ``written[i]`` that worker ``j`` read *before* its latest completed
  sync (only worker ``j`` writes its row);
* ``serving[j]``: 1 from just before worker ``j``'s first sync until its shutdown (or until the
  supervisor sees it dead): only serving workers are waited for;
* a UNIX datagram socket per worker in a private directory: a one-byte *nudge* makes that worker
  sync now instead of at its next poll.

A write takes number ``w = written[i] + 1`` after its commit. Worker ``j`` publishes ``applied[j][i]
>= w`` only after a sync that began after it read ``written[i] >= w``, so that sync read the committed
write. A worker that was not serving when the writer looked starts serving, and syncs, after that
look, hence after the commit. Nothing here takes a lock, so a worker killed at any instruction
cannot block the others.

The writer (:class:`AckMiddleware`, around every successful POST/PUT/PATCH/DELETE under
``/v1/keywords``) holds the response until every serving worker has applied its write, nudging the
late ones every ``RENUDGE_S``, for at most ``worker_sync_timeout_s``. Past that the write still
succeeds (it is durable; the late workers catch up at their next sync): the response carries
``X-OpenKWS-Sync: timeout`` and ``X-OpenKWS-Sync-Pending: <worker ids>``, a warning is logged and
``openkws_worker_sync_timeouts_total`` counts it. In time, the header is ``X-OpenKWS-Sync: ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.context import SpawnContext
from typing import Any

from openkws.server.metrics import ASGIApp, Message, Metrics, Receive, Scope, Send

log = logging.getLogger("openkws")

RENUDGE_S = 0.05  # a nudge can be lost (worker restarting, full queue): nudge the late ones again
WAIT_MIN_S, WAIT_MAX_S = 0.001, 0.01  # the writer rereads the board with this backoff
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_PREFIX = "/v1/keywords"  # every registry write the API offers (API keys are read from the database)
SYNC_HEADER = b"x-openkws-sync"
PENDING_HEADER = b"x-openkws-sync-pending"


class WorkerBoard:
    """The shared state of ``n`` workers (see the module docstring). Made by the supervisor before it
    spawns the workers; each worker receives it as a process argument."""

    def __init__(self, n: int, ctx: SpawnContext) -> None:
        if n < 1:
            raise ValueError(f"workers must be >= 1, got {n}")
        self.n = n
        self.written: Any = ctx.Array(ctypes.c_int64, n, lock=False)
        self.applied: Any = ctx.Array(ctypes.c_int64, n * n, lock=False)
        self.serving: Any = ctx.Array(ctypes.c_int64, n, lock=False)
        self.nudge_dir = tempfile.mkdtemp(prefix="openkws-workers-")  # mode 0700: ours alone

    def address(self, worker: int) -> str:
        return os.path.join(self.nudge_dir, f"w{worker}")

    # -- worker side ---------------------------------------------------------------------------------
    def snapshot(self) -> tuple[int, ...]:
        return tuple(self.written[:])

    def publish(self, me: int, snapshot: tuple[int, ...]) -> None:
        """Worker ``me``'s index includes every write counted in ``snapshot`` (read before its sync)."""
        self.applied[me * self.n : (me + 1) * self.n] = list(snapshot)

    def join(self, me: int) -> None:
        self.serving[me] = 1

    def leave(self, worker: int) -> None:
        """Worker ``worker`` stops serving (its shutdown, or the supervisor saw it dead)."""
        self.serving[worker] = 0

    def take(self, me: int) -> int:
        """The number of a write worker ``me`` just committed (call it after the commit)."""
        self.written[me] += 1  # one event loop per worker makes this the only writer of the slot
        return int(self.written[me])

    def pending(self, me: int, number: int) -> list[int]:
        """Serving workers whose index may still lack write ``number`` of worker ``me``."""
        return [
            j for j in range(self.n) if j != me and self.serving[j] and self.applied[j * self.n + me] < number
        ]

    def close(self) -> None:
        """Supervisor: remove the nudge sockets' directory."""
        shutil.rmtree(self.nudge_dir, ignore_errors=True)


class Nudges:
    """One worker's end of the nudges: a datagram socket that wakes its registry follower, and a
    socket to nudge the others. ``wait(t)`` returns True when nudged within ``t`` seconds."""

    def __init__(self, board: WorkerBoard, me: int) -> None:
        self.board = board
        self.me = me
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        path = board.address(me)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's predecessor
        self._inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._inbox.setblocking(False)
        self._inbox.bind(path)
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._loop.add_reader(self._inbox.fileno(), self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while True:  # a burst of nudges is one wake-up
                self._inbox.recv(64)
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except asyncio.TimeoutError:  # builtin TimeoutError only from Python 3.11
            return False
        self._event.clear()
        return True

    def send(self, workers: list[int]) -> None:
        for j in workers:
            with contextlib.suppress(OSError):  # not bound yet, gone, or its queue full: all harmless
                self._outbox.sendto(b"!", self.board.address(j))

    async def acknowledge(self, number: int, timeout_s: float) -> list[int]:
        """Wait until every serving worker has applied write ``number`` of this worker, nudging the late
        ones; returns the workers still late after ``timeout_s`` (empty: all in step)."""
        start = time.monotonic()
        next_nudge = start
        delay = WAIT_MIN_S
        while True:
            late = self.board.pending(self.me, number)
            now = time.monotonic()
            if not late or now - start >= timeout_s:
                return late
            if now >= next_nudge:
                self.send(late)
                next_nudge = now + RENUDGE_S
            await asyncio.sleep(min(delay, max(0.0, start + timeout_s - now)))
            delay = min(2 * delay, WAIT_MAX_S)

    def close(self) -> None:
        self._loop.remove_reader(self._inbox.fileno())
        self._inbox.close()
        self._outbox.close()
        with contextlib.suppress(OSError):
            os.unlink(self.board.address(self.me))


def is_write(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    return (
        scope["type"] == "http"
        and scope.get("method") in WRITE_METHODS
        and (path == WRITE_PREFIX or path.startswith(WRITE_PREFIX + "/"))
    )


class AckMiddleware:
    """Pure ASGI middleware: a successful keyword write is answered once every serving worker applied
    it, or after ``timeout_s`` with ``X-OpenKWS-Sync: timeout`` (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, nudges: Callable[[], Nudges | None], timeout_s: float, metrics: Metrics
    ) -> None:
        self.app = app
        self.nudges = nudges  # None until the lifespan has joined the board (and after it left)
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_write(scope):
            await self.app(scope, receive, send)
            return

        async def acknowledged(message: Message) -> None:
            nudges = self.nudges()
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300 and nudges:
                t0 = time.monotonic()
                late = await nudges.acknowledge(nudges.board.take(nudges.me), self.timeout_s)
                waited = time.monotonic() - t0
                self.metrics.worker_sync.observe(waited)
                headers = [*message.get("headers", []), (SYNC_HEADER, b"timeout" if late else b"ok")]
                if late:
                    self.metrics.worker_sync_timeouts.inc()
                    headers.append((PENDING_HEADER, ",".join(map(str, late)).encode()))
                    log.warning(
                        "%s %s acknowledged before worker(s) %s applied it (waited %.1f s, "
                        "OPENKWS_WORKER_SYNC_TIMEOUT_S): streams they serve see it at their next sync",
                        scope.get("method"),
                        scope.get("path"),
                        late,
                        waited,
                    )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, acknowledged)

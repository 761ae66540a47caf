"""Micro-batching across streams: many coroutines ``submit`` work, one consumer groups it.

The consumer waits on an event (never polls) for the first job, then takes up to ``max_batch`` jobs
(the queue shared among the free workers, :meth:`MicroBatcher.batch_cap`), waiting at most
``max_wait_s`` for stragglers, and runs the batch in a bounded thread pool. At most ``workers``
batches run at once; while all workers are busy, new jobs accumulate into the next, larger batch.
The event loop itself never runs inference.

If a batch raises, each job is retried alone, so one broken job fails only its own future.

Catch-up jobs (``catch_up(item)`` true when submitted: a stream still decoding a VAD onset's pre-roll
burst, one that fell behind, an upload) wait in a second queue. A batch takes the live queue first;
catch-up jobs get every place the live queue leaves, and :data:`CATCH_UP_PLACES` (one) in a batch
full of live jobs, so they are never starved. Each stream's job carries a bounded amount of
audio (the step cap of :class:`~openkws.server.sessions.BatchRunner`), so a live stream's step never
waits behind another stream's burst.

:class:`EngineLoad` measures what admission control needs: the wall time each batch holds a worker
(GIL waits and preemption included, so it is what a stream actually waits for), the stream-seconds of
audio that time bought, and how old the oldest audio of each batch was when its step ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from openkws.server.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")


MIN_SPLIT = 8  # a batch is split across free workers only above this many jobs
# Places a batch with live jobs keeps for catch-up jobs (so none starves). One: a catch-up job carries
# up to a live step (400 ms) where a live one carries a client frame (100 ms); a share of one per 16
# live jobs gave the live batch back the cost the bursts had added (bench/catch_up.py).
CATCH_UP_PLACES = 1
LAG_WINDOW_S = 1.0  # the backlog is the worst lag of the batches that ended this recently


class EngineLoad:
    """The engine's measured cost and lag (thread-safe; batches record, admission reads).

    * ``cost``: worker-seconds per stream-second of audio, over time-decayed sums (half-life
      ``half_life_s``), so it follows the batch sizes and the contention of the current load.
    * ``step_s``: time-decayed mean wall time of one batch.
    * ``backlog_s``: the worst lag of the last second: for each batch, how long the oldest queued
      audio of a live stream had waited at the step's start, plus the step's wall time.
    * ``utilisation(n)``: ``n`` streams x ``cost`` / ``slots``; at 1 the workers never rest.

    Example:
        >>> load = EngineLoad(slots=2)
        >>> load.record(busy_s=0.05, audio_s=5.0, lag_s=0.2, now=10.0)
        >>> round(load.cost, 3), round(load.utilisation(100), 2)
        (0.01, 0.5)
        >>> round(load.backlog_s(now=10.5), 2), load.backlog_s(now=12.0)
        (0.2, 0.0)
    """

    def __init__(self, slots: int, half_life_s: float = 5.0) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.half_life_s = half_life_s
        self._lock = threading.Lock()
        self._busy = 0.0  # decayed worker-seconds
        self._audio = 0.0  # decayed stream-seconds
        self._step_busy = 0.0  # decayed worker-seconds of recorded steps (not the seed)
        self._steps = 0.0  # decayed batch count
        self._at: float | None = None
        self._lags: deque[tuple[float, float]] = deque()

    def _decay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            f = math.exp(-math.log(2.0) * (now - self._at) / self.half_life_s)
            self._busy, self._audio = self._busy * f, self._audio * f
            self._step_busy, self._steps = self._step_busy * f, self._steps * f
        self._at = now if self._at is None else max(self._at, now)

    def record(self, busy_s: float, audio_s: float, lag_s: float = 0.0, now: float | None = None) -> None:
        """One batch: its wall time, the stream-seconds it processed, its oldest audio's lag."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._decay(now)
            self._busy += max(0.0, busy_s)
            self._audio += max(0.0, audio_s)
            self._step_busy += max(0.0, busy_s)
            self._steps += 1.0
            self._lags.append((now, lag_s))
            while self._lags and self._lags[0][0] < now - LAG_WINDOW_S:
                self._lags.popleft()

    def seed(self, busy_s: float, audio_s: float) -> None:
        """A first cost measurement (the start-up warm-up): no step time or lag, since a small cold
        batch says nothing about the steps of a loaded engine."""
        with self._lock:
            self._decay(time.monotonic())
            self._busy += max(0.0, busy_s)
            self._audio += max(0.0, audio_s)

    @property
    def cost(self) -> float | None:
        """Worker-seconds per stream-second; None before any audio was processed."""
        with self._lock:
            return self._busy / self._audio if self._audio > 1e-9 else None

    @property
    def step_s(self) -> float | None:
        with self._lock:
            return self._step_busy / self._steps if self._steps > 1e-9 else None

    def utilisation(self, streams: int) -> float:
        """Share of the workers' time that ``streams`` real-time streams take (0 when unmeasured)."""
        c = self.cost
        return 0.0 if c is None else streams * c / self.slots

    def backlog_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            return max((lag for t, lag in self._lags if t >= now - LAG_WINDOW_S), default=0.0)


class QueueFull(RuntimeError):
    """More jobs are waiting than ``max_queue``: the server is overloaded."""


class BatcherClosed(RuntimeError):
    pass


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait_s: float,
        workers: int,
        max_queue: int,
        metrics: Metrics | None = None,
        name: str = "openkws-infer",
        load: EngineLoad | None = None,
        catch_up: Callable[[T], bool] | None = None,
    ) -> None:
        self._process = process
        self._catch_up = catch_up
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.workers = workers
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._jobs: deque[_Job[T, R]] = deque()  # live
        self._later: deque[_Job[T, R]] = deque()  # catch-up
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._running = 0  # batches in the workers
        self.load = load or EngineLoad(workers)
        if metrics is not None:  # read when scraped: with --workers each write costs a shared-file update
            metrics.watch(metrics.queue_depth, lambda: self.depth)

    @property
    def depth(self) -> int:
        """Queued jobs, live and catch-up."""
        return len(self._jobs) + len(self._later)

    @property
    def catch_up_depth(self) -> int:
        return len(self._later)

    def oldest_wait_s(self) -> float:
        """How long the oldest queued job, live or catch-up, has waited for a worker (0 when none
        waits): a catch-up job that waits is a stream whose new audio waits too."""
        now, oldest = time.perf_counter(), 0.0
        for queue in (self._jobs, self._later):
            for job in queue:
                if not job.future.done():
                    oldest = max(oldest, now - job.enqueued)
                    break
        return oldest

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._consume(), name="openkws-batcher")

    async def stop(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in (self._jobs, self._later):
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("the server is shutting down"))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    async def submit(self, item: T) -> R:
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        if self.depth >= self.max_queue:
            raise QueueFull(f"{self.depth} inference jobs are queued; the server is overloaded, retry later")
        job: _Job[T, R] = _Job(item, asyncio.get_running_loop().create_future())
        later = self._catch_up is not None and self._catch_up(item)
        (self._later if later else self._jobs).append(job)
        self._wake.set()
        return await job.future

    async def _wait_for_job(self, timeout: float | None, live_only: bool = False) -> bool:
        """Wait for a queued job (a live one with ``live_only``); False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._jobs and (live_only or not self._later):
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return False
        return True

    def batch_cap(self, queued: int, free_workers: int) -> int:
        """Jobs the next batch may take: the queue shared among the free workers, never below
        ``MIN_SPLIT`` (small batches keep their batching gain) nor above ``max_batch``.

        Each stream has one job at a time, so a batch that takes every stream leaves the other
        workers nothing to do until it ends, and then every stream resubmits at once into the next
        single batch: the streams stay in lockstep on one thread. Splitting the queue breaks that.

        Example:
            >>> b = MicroBatcher(lambda xs: xs, max_batch=64, max_wait_s=0.0, workers=2, max_queue=8)
            >>> b.batch_cap(64, 2), b.batch_cap(64, 1), b.batch_cap(6, 2), b.batch_cap(300, 2)
            (32, 64, 8, 64)
        """
        share = -(-queued // max(1, free_workers))
        return max(1, min(self.max_batch, max(MIN_SPLIT, share)))

    def catch_up_room(self, cap: int, live_queued: int, catch_up_queued: int) -> int:
        """How many of a batch's ``cap`` places go to catch-up jobs: every place the live queue
        leaves, and ``CATCH_UP_PLACES`` (the oldest jobs) in a batch full of live ones, so none
        starves; a batch of one place goes to a live job.

        Example:
            >>> b = MicroBatcher(lambda xs: xs, max_batch=64, max_wait_s=0.0, workers=2, max_queue=8)
            >>> b.catch_up_room(64, 100, 30), b.catch_up_room(40, 20, 30), b.catch_up_room(40, 0, 30)
            (1, 20, 30)
            >>> b.catch_up_room(8, 8, 1), b.catch_up_room(8, 8, 0), b.catch_up_room(1, 5, 5)
            (1, 0, 0)
        """
        if catch_up_queued == 0 or (cap == 1 and live_queued):
            return 0
        return min(catch_up_queued, cap, max(CATCH_UP_PLACES, cap - live_queued))

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # a free worker first: jobs pile up into bigger batches meanwhile
            await self._wait_for_job(None)
            cap = self.batch_cap(self.depth, self.workers - self._running)
            later = self.catch_up_room(cap, len(self._jobs), len(self._later))
            live_cap = cap - later
            batch: list[_Job[T, R]] = []
            deadline = loop.time() + self.max_wait_s
            while len(batch) < live_cap:  # live jobs first, stragglers included
                while self._jobs and len(batch) < live_cap:
                    job = self._jobs.popleft()
                    if not job.future.done():  # its submitter gave up (client went away)
                        batch.append(job)
                remaining = deadline - loop.time()
                if (
                    len(batch) >= live_cap
                    or remaining <= 0
                    or not await self._wait_for_job(remaining, live_only=True)
                ):
                    break
            while self._later and len(batch) < cap:  # then catch-up work, in what room is left
                job = self._later.popleft()
                if not job.future.done():
                    batch.append(job)
            if not batch:
                self._slots.release()
                continue
            if self._metrics is not None:
                now = time.perf_counter()
                for j in batch:
                    self._metrics.queue_wait.observe(max(0.0, now - j.enqueued))
            self._running += 1
            fut = loop.run_in_executor(self._executor, self._run, [j.item for j in batch])
            fut.add_done_callback(functools.partial(self._done, batch=batch))

    def _run(self, items: list[T]) -> list[R | BaseException]:
        start = time.perf_counter()
        try:
            results: list[R | BaseException] = list(self._process(items))
        except Exception:
            if len(items) == 1:
                raise
            results = []
            for it in items:
                try:
                    results.append(self._process([it])[0])
                except Exception as e:
                    results.append(e)
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(items))
            self._metrics.batch_latency.observe(time.perf_counter() - start)
        return results

    def _done(self, fut: asyncio.Future[list[R | BaseException]], batch: list[_Job[T, R]]) -> None:
        self._running -= 1
        self._slots.release()
        exc: BaseException | None = (
            BatcherClosed("the server is shutting down") if fut.cancelled() else fut.exception()
        )
        results: list[R | BaseException] = [exc] * len(batch) if exc is not None else fut.result()
        for job, res in zip(batch, results, strict=True):
            if job.future.done():
                continue
            if isinstance(res, BaseException):
                job.future.set_exception(res)
            else:
                job.future.set_result(res)

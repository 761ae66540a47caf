"""The micro-batcher shares a full queue among its free workers, so streams (one job each) do not
fall into lockstep in one batch on one thread while the other worker idles; and it batches live jobs
before catch-up jobs (a VAD onset's burst, a stream behind, an upload) without starving them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from openkws.server.batcher import MicroBatcher, QueueFull


def test_a_full_queue_is_split_across_free_workers() -> None:
    sizes: list[int] = []
    started = threading.Semaphore(0)
    release = threading.Event()

    def process(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        started.release()
        assert release.wait(60), "the test never released the batches"
        return [x * 2 for x in items]

    async def main() -> list[int]:
        b: MicroBatcher[int, int] = MicroBatcher(
            process, max_batch=64, max_wait_s=0.0, workers=2, max_queue=1000
        )
        jobs = [asyncio.create_task(b.submit(i)) for i in range(64)]  # every "stream" at once
        await asyncio.sleep(0)  # all 64 are queued before the consumer starts
        b.start()
        for _ in range(2):  # both workers run a batch at the same time
            while not started.acquire(blocking=False):
                await asyncio.sleep(0.01)
        running = list(sizes)
        release.set()
        out = await asyncio.gather(*jobs)
        await b.stop()
        assert out == [2 * i for i in range(64)]
        return running

    assert asyncio.run(main()) == [32, 32]


def test_small_queues_stay_whole() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(
        lambda xs: list(xs), max_batch=64, max_wait_s=0.0, workers=2, max_queue=8
    )
    assert b.batch_cap(5, 2) == 8 and b.batch_cap(20, 2) == 10 and b.batch_cap(20, 1) == 20
    assert b.batch_cap(0, 0) == 8  # never below one job, whatever the count


def _run_queued(
    live: list[int], catch_up: list[int], max_batch: int
) -> tuple[list[list[int]], dict[int, int]]:
    """Queue the catch-up jobs (negative) first, then the live ones, start one worker; returns the
    batches in order and, for each job, the batch that answered it."""
    batches: list[list[int]] = []

    def process(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [len(batches)] * len(items)

    async def main() -> dict[int, int]:
        b: MicroBatcher[int, int] = MicroBatcher(
            process, max_batch=max_batch, max_wait_s=0.0, workers=1, max_queue=1000, catch_up=lambda x: x < 0
        )
        jobs = {x: asyncio.create_task(b.submit(x)) for x in catch_up + live}
        await asyncio.sleep(0)
        assert b.depth == len(jobs) and b.catch_up_depth == len(catch_up)
        b.start()
        done = {x: await t for x, t in jobs.items()}
        await b.stop()
        return done

    return batches, asyncio.run(main())


def test_live_jobs_are_batched_before_catch_up_jobs_queued_earlier() -> None:
    """A burst (catch-up) submitted first does not hold back the live jobs queued after it: they
    fill the first batch, the catch-up jobs get the places the live queue leaves, then the rest."""
    live, later = list(range(1, 9)), [-k for k in range(1, 13)]
    batches, answered = _run_queued(live, later, max_batch=10)
    assert batches[0] == [*live, -1, -2]  # 8 live + max(1, 10 // 5) catch-up, live first
    assert batches[1] == later[2:]  # no live job waits: catch-up work fills the batch
    assert all(answered[x] == 1 for x in live)


def test_catch_up_is_not_starved_by_a_full_live_queue() -> None:
    batches, answered = _run_queued(list(range(1, 31)), [-1], max_batch=8)
    assert batches[0] == [*range(1, 8), -1] and answered[-1] == 1
    assert [len(b) for b in batches] == [8, 8, 8, 7]


def test_catch_up_jobs_count_in_the_queue_admission_reads() -> None:
    async def main() -> None:
        b: MicroBatcher[int, int] = MicroBatcher(
            lambda xs: list(xs), max_batch=8, max_wait_s=0.0, workers=1, max_queue=2, catch_up=lambda x: x < 0
        )
        job = asyncio.create_task(b.submit(-1))  # not started: the job waits
        await asyncio.sleep(0)
        assert b.depth == 1 and b.catch_up_depth == 1 and b.oldest_wait_s() > 0.0
        live = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="2 inference jobs are queued"):  # max_queue counts both
            await b.submit(2)
        b.start()
        assert await job == -1 and await live == 1
        assert b.depth == 0 and b.oldest_wait_s() == 0.0
        await b.stop()

    asyncio.run(main())

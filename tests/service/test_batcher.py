"""The micro-batcher shares a full queue among its free workers, so streams (one job each) do not
fall into lockstep in one batch on one thread while the other worker idles."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from openkws.server.batcher import MicroBatcher


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

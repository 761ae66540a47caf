"""Issue 25 defect 4: replicas started together on an empty PostgreSQL database raced to create the
schema (one died on ``UniqueViolation … CREATE TABLE keywords``). Three processes, held at a barrier,
open a :class:`KeywordStore` on the same empty database at once, for several fresh databases; every
one must succeed and the schema must be complete."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.postgres import PostgresUnavailable
from tests.reliability.pg_cluster import PgCluster, pg_cluster

REPLICAS = 3
TRIALS = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    try:
        with pg_cluster() as c:
            yield c
    except PostgresUnavailable as e:
        pytest.skip(str(e))


def _replica(urls: list[str], barrier: Any, results: Any) -> None:
    """One replica's start-up, once per database: wait for the others, then open the store."""
    from openkws.keywords.store import KeywordStore

    for url in urls:
        barrier.wait(timeout=120)
        try:
            KeywordStore(url).close()
            results.put((url, "ok"))
        except Exception as e:  # reported, and the test fails on it
            results.put((url, f"{type(e).__name__}: {e}"[:300]))


def test_three_replicas_create_the_schema_at_once(cluster: PgCluster) -> None:
    from sqlalchemy import create_engine, inspect

    from openkws.keywords.store import ADDED_COLUMNS

    urls = [cluster.create_database(f"race_{i}") for i in range(TRIALS)]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(REPLICAS), ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(urls, barrier, results)) for _ in range(REPLICAS)]
    for p in procs:
        p.start()
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + 600
    while len(got) < REPLICAS * TRIALS:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            died = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not died, f"a replica process died before reporting: exit codes {died}"
            assert time.monotonic() < deadline, f"replicas did not finish; reported so far: {got}"
    for p in procs:
        p.join(60)
    failures = [g for g in got if g[1] != "ok"]
    assert not failures, failures
    assert all(p.exitcode == 0 for p in procs)
    for url in urls:
        engine = create_engine(url)
        insp = inspect(engine)
        assert {"keywords", "api_keys", "registry_changes"} <= set(insp.get_table_names())
        assert set(ADDED_COLUMNS) <= {c["name"] for c in insp.get_columns("keywords")}
        engine.dispose()

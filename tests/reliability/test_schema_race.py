"""Issue 25 defect 4: replicas started together on an empty PostgreSQL database raced to create the
schema (one died on ``UniqueViolation … CREATE TABLE keywords``). Three replicas, held at a barrier,
open a :class:`KeywordStore` on the same empty database at once, for several fresh databases; every
one must succeed and the schema must be complete.

Threads, not processes: each has its own engine and connections, so the race is the same inside
PostgreSQL, without three interpreter start-ups (which, on a loaded machine, made a barrier between
processes time out)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect

from openkws.keywords.schema import ADDED_COLUMNS
from openkws.keywords.store import KeywordStore
from tests.deploy.postgres import PostgresUnavailable
from tests.reliability.pg_cluster import PgCluster, pg_cluster

REPLICAS = 3
TRIALS = 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    try:
        with pg_cluster() as c:
            yield c
    except PostgresUnavailable as e:
        pytest.skip(str(e))


def _open_store(url: str, barrier: threading.Barrier, results: list[str]) -> None:
    """One replica's start-up: wait for the others, then open the store (its own engine and
    connections, so the three race inside PostgreSQL as separate servers do)."""
    try:
        barrier.wait(timeout=300)
        KeywordStore(url).close()
        results.append("ok")
    except Exception as e:  # reported, and the test fails on it
        results.append(f"{type(e).__name__}: {' '.join(str(e).split())}"[:300])


def test_three_replicas_create_the_schema_at_once(cluster: PgCluster) -> None:
    failures = []
    for trial in range(TRIALS):
        url = cluster.create_database(f"race_{trial}")
        barrier, results = threading.Barrier(REPLICAS), []
        threads = [
            threading.Thread(target=_open_store, args=(url, barrier, results)) for _ in range(REPLICAS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert len(results) == REPLICAS, f"trial {trial}: {REPLICAS - len(results)} replica(s) hung"
        failures += [f"trial {trial}: {r}" for r in results if r != "ok"]
        engine = create_engine(url)
        insp = inspect(engine)
        assert {"keywords", "api_keys", "registry_changes"} <= set(insp.get_table_names())
        assert set(ADDED_COLUMNS) <= {c["name"] for c in insp.get_columns("keywords")}
        engine.dispose()
    assert not failures, failures

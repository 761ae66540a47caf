"""Detection counts over several workers (:mod:`openkws.server.detection_counts`): the snapshot
format, the merge, and the files in a real directory. tests/service/test_workers_counts.py asks a
real two-worker server."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openkws.server.detection_counts import (
    DetectionCounts,
    SharedCounts,
    Snapshot,
    decode,
    encode,
    merge,
    ranked,
)
from openkws.server.metrics_shared import COUNTS_PREFIX, prepare


def _counts(since: float, tenants: dict[str, dict[int, int]]) -> DetectionCounts:
    c = DetectionCounts()
    c.since = since
    for tenant, by_id in tenants.items():
        c.add(tenant, [i for i, n in by_id.items() for _ in range(n)])
    return c


def test_a_snapshot_survives_its_file() -> None:
    s = Snapshot(1700000000.25, {"acme": {3: 7, 12: 1}, "default": {}})
    assert decode(encode(s)) == s


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": {"1": 2}', "not JSON"),  # cut short
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a format-1 snapshot"),
        (b'{"format": 2, "since": 1.0, "tenants": {}}', "not a format-1 snapshot"),
        (b'{"format": 1, "since": "x", "tenants": {}}', "since is 'x', not a time"),
        (b'{"format": 1, "since": NaN, "tenants": {}}', "since is nan, not a time"),
        (b'{"format": 1, "since": 1.0, "tenants": []}', "tenants is not an object"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": 3}}', "tenant 'a': counts are not an object"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": {"x": 3}}}', "is not keyword id: count"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": {"1": -3}}}', "is not keyword id: count"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": {"1": 1.5}}}', "is not keyword id: count"),
        (b'{"format": 1, "since": 1.0, "tenants": {"a": {"1": true}}}', "is not keyword id: count"),
    ],
)
def test_a_broken_snapshot_says_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode(data)


def test_merge_sums_the_workers_and_starts_at_the_first() -> None:
    live = Snapshot(105.0, {"acme": {1: 2, 2: 1}})
    other = Snapshot(100.0, {"acme": {1: 3, 4: 1}, "zeta": {1: 50}})
    dead = Snapshot(101.0, {"acme": {2: 4}})
    since, total = merge("acme", [live, other, dead])
    assert since == 100.0 and total == {1: 5, 2: 5, 4: 1}  # zeta's counts stay zeta's
    assert merge("nobody", [live]) == (105.0, {})
    assert merge("acme", []) == (math.inf, {})


def test_ranked_leaves_deleted_keywords_out_before_the_cut() -> None:
    counts = {1: 5, 2: 9, 3: 5, 4: 1, 5: 0}
    enrolled = {1: "a", 3: "c", 4: "d", 5: "e"}  # 2, the most detected, was deleted
    assert ranked(counts, enrolled, 2) == [(1, 5), (3, 5)]  # ties by id; still 2 places
    assert ranked(counts, enrolled, 10) == [(1, 5), (3, 5), (4, 1)]  # a zero is no detection
    assert ranked({}, enrolled, 3) == []


def test_counts_forget_deleted_keywords_and_say_when_they_changed() -> None:
    c = _counts(10.0, {"acme": {1: 2, 2: 1}})
    v = c.version
    assert c.tenant("acme") == (10.0, {1: 2, 2: 1})
    c.forget("acme", [1])
    assert c.version > v and c.snapshot() == Snapshot(10.0, {"acme": {2: 1}})
    c.forget("acme", [2])
    assert c.snapshot().tenants == {}  # an emptied tenant leaves
    c.forget("nobody", [2])  # nothing to forget
    assert c.tenant("acme") == (10.0, {})


def test_workers_answer_for_each_other_through_their_files(tmp_path: Path) -> None:
    d = prepare(tmp_path / "metrics")
    a_counts = _counts(100.0, {"acme": {1: 2}})
    b_counts = _counts(101.0, {"acme": {1: 1, 2: 3}})
    a, b = SharedCounts(a_counts, d, pid=11), SharedCounts(b_counts, d, pid=12)
    assert a.path.name.startswith(f"{COUNTS_PREFIX}11-") and a.path.suffix == ".json"
    assert a.write() and not a.write()  # unchanged: no second write
    assert b.tenant("acme") == (100.0, {1: 3, 2: 3})  # b's file not written yet: its live counts count
    assert a.tenant("acme") == (100.0, {1: 2})  # b has written nothing
    b.write()
    assert a.tenant("acme") == b.tenant("acme") == (100.0, {1: 3, 2: 3})
    assert sorted(p.suffix for p in d.iterdir()) == [".json", ".json"]  # no temporary file left

    # a dies; its successor has another file, starts from zero, and nothing counts twice
    successor = SharedCounts(_counts(200.0, {}), d, pid=11)  # even with the dead worker's pid
    assert successor.path != a.path
    successor.write()
    assert successor.tenant("acme") == b.tenant("acme") == (100.0, {1: 3, 2: 3})
    successor.counts.add("acme", [2])
    successor.write()
    assert b.tenant("acme") == (100.0, {1: 3, 2: 4})

    # a live worker forgets a deleted keyword in its next write; the dead one's stays in its file
    # (the endpoint keeps only enrolled keywords: ranked)
    b_counts.forget("acme", [1])
    b.write()
    assert successor.tenant("acme") == (100.0, {1: 2, 2: 4})

    assert prepare(d) == d and not list(d.iterdir())  # the next start begins from nothing


def test_a_bad_file_is_skipped_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path
    me = SharedCounts(_counts(100.0, {"acme": {1: 2}}), d, pid=11)
    other = SharedCounts(_counts(90.0, {"acme": {1: 1}}), d, pid=12)
    other.write()
    (d / f"{COUNTS_PREFIX}13-dead.json").write_bytes(b'{"format": 1, "since": 1.0, "ten')  # cut short
    (d / f"{COUNTS_PREFIX}14-dead.json").write_text(json.dumps({"format": 1, "since": 1.0, "tenants": 7}))
    (d / f"{COUNTS_PREFIX}15-dead.json").mkdir()  # not even a file
    (d / f"{COUNTS_PREFIX}16-x.tmp").write_bytes(b"half a snapsh")  # a write in progress: never read
    with caplog.at_level(logging.WARNING, logger="openkws"):
        assert me.tenant("acme") == (90.0, {1: 3})
        assert me.tenant("acme") == (90.0, {1: 3})
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3, warned  # each bad file once, not at every request
    assert any(f"{COUNTS_PREFIX}13-dead.json" in w and "not JSON" in w for w in warned)
    assert any(f"{COUNTS_PREFIX}14-dead.json" in w and "tenants is not an object" in w for w in warned)


def test_a_single_process_shares_nothing(client: TestClient) -> None:
    state = client.app.state.openkws  # type: ignore[attr-defined]
    assert state.shared_counts is None  # no directory: its own counts, no file
    state.counts.add("default", [1])
    assert state.detection_totals("default") == (state.counts.since, {1: 1})

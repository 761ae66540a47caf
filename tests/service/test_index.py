"""Copy-on-write keyword index: snapshots are immutable, deletes and thresholds swap references."""

from __future__ import annotations

import numpy as np

from openkws.engine.index import KeywordEntry, KeywordIndex
from openkws.text.phonetics import edit_distance, phoneme_distance, relation


def entries(n: int, dim: int = 8, tenant: str = "default", seed: int = 0) -> list[KeywordEntry]:
    rng = np.random.default_rng(seed)
    return [
        KeywordEntry(i + 1, tenant, f"kw{i}", ("K",), 0.5, rng.standard_normal(dim).astype(np.float32))
        for i in range(n)
    ]


def test_snapshot_is_not_mutated_by_writers() -> None:
    idx = KeywordIndex(8)
    idx.upsert(entries(5))
    old = idx.tenant("default")
    idx.remove("default", [1, 2])
    idx.set_thresholds("default", {3: 0.9})
    idx.upsert(
        entries(1, seed=1)[:0] + [KeywordEntry(99, "default", "new", ("N",), 0.4, np.ones(8, np.float32))]
    )
    assert old.ids.tolist() == [1, 2, 3, 4, 5] and len(old) == 5
    new = idx.tenant("default")
    assert new.ids.tolist() == [3, 4, 5, 99]
    assert new.thresholds_for(np.array([3, 4, 1])).tolist() == [np.float32(0.9), np.float32(0.5), np.inf]


def test_search_matches_matrix_product() -> None:
    idx = KeywordIndex(8)
    es = entries(50)
    idx.upsert(es)
    t = idx.tenant("default")
    q = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores, ids = t.search(q, 5)
    ref = q @ t.proxies.T
    for r in range(4):
        top = np.argsort(-ref[r])[:5]
        assert ids[r].tolist() == t.ids[top].tolist()
        np.testing.assert_allclose(scores[r], ref[r, top], atol=1e-5)


def test_tenants_are_separate_and_empty_tenant_is_defined() -> None:
    idx = KeywordIndex(8)
    idx.upsert(entries(3, tenant="a") + [KeywordEntry(10, "b", "x", ("X",), 0.5, np.ones(8, np.float32))])
    assert idx.tenant("a").ids.tolist() == [1, 2, 3] and idx.tenant("b").ids.tolist() == [10]
    empty = idx.tenant("nobody")
    s, i = empty.search(np.ones((2, 8), np.float32), 4)
    assert s.shape == (2, 0) and i.shape == (2, 0) and len(empty) == 0
    idx.remove("b", [10])
    assert idx.tenants() == ["a"] and idx.total() == 3


def test_subset() -> None:
    idx = KeywordIndex(8)
    idx.upsert(entries(6))
    ids, prox, thr = idx.tenant("default").subset([2, 5, 77])
    assert ids.tolist() == [2, 5] and prox.shape == (2, 8) and thr.tolist() == [0.5, 0.5]


def test_phoneme_distance_and_relation() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert phoneme_distance(("A", "|", "B"), ("A", "B")) == 0.0
    assert phoneme_distance((), ()) == 0.0
    assert relation(("A", "B", "C"), ("B", "C")) == "contains"
    assert relation(("B",), ("A", "B", "C")) == "contained_in"
    assert relation(("A",), ("A",)) is None

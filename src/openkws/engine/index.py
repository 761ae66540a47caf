"""Keyword proxy index: immutable per-tenant snapshots of a FAISS inner-product index over
L2-normalized text proxies, keyed by keyword id.

Writers never mutate a snapshot that readers may hold: every change builds a new
:class:`TenantIndex` and the :class:`KeywordIndex` swaps one reference (copy-on-write), so a stream
decoding concurrently sees either the old or the new set of keywords, never a half-updated one.

Example:
    >>> import numpy as np
    >>> idx = KeywordIndex(dim=2)
    >>> e = [KeywordEntry(1, "default", "yes", ("Y", "EH", "S"), 0.5, np.array([1.0, 0.0], np.float32)),
    ...      KeywordEntry(2, "default", "no", ("N", "OW"), 0.6, np.array([0.0, 1.0], np.float32))]
    >>> idx.upsert(e)
    >>> t = idx.tenant("default")
    >>> scores, ids = t.search(np.array([[0.8, 0.6]], np.float32), 2)
    >>> ids.tolist(), np.round(scores.astype(float), 2).tolist()
    ([[1, 2]], [[0.8, 0.6]])
    >>> idx.remove("default", [1]); idx.tenant("default").ids.tolist()
    [2]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

IndexBackend = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class KeywordEntry:
    """One enrolled keyword as the detector sees it; ``proxy`` is the L2-normalized text embedding."""

    id: int
    tenant: str
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    proxy: np.ndarray = field(repr=False, compare=False)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(n, 1e-12), dtype=np.float32)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class TenantIndex:
    """Immutable keyword set of one tenant: sorted ids, proxies [K, D], thresholds [K], texts."""

    def __init__(
        self,
        dim: int,
        entries: Sequence[KeywordEntry],
        backend: IndexBackend = "cpu",
        gpu_resources: Any = None,
        _faiss: Any = None,
    ) -> None:
        order = sorted(entries, key=lambda e: e.id)
        self.dim = dim
        self.backend = backend
        self.entries: tuple[KeywordEntry, ...] = tuple(order)
        self.ids = np.array([e.id for e in order], np.int64)
        self.thresholds = np.array([e.threshold for e in order], np.float32)
        self.proxies = (
            l2_normalize(np.stack([e.proxy for e in order])) if order else np.zeros((0, dim), np.float32)
        )
        self.by_id: MappingProxyType[int, KeywordEntry] = MappingProxyType({e.id: e for e in order})
        if _faiss is not None:
            self._index = _faiss
        else:
            cpu = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
            if len(order):
                cpu.add_with_ids(self.proxies, self.ids)
            self._index = cpu
            if backend == "gpu" and gpu_resources is not None:
                self._index = faiss.index_cpu_to_gpu(gpu_resources, 0, cpu)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, keyword_id: object) -> bool:
        return keyword_id in self.by_id

    def with_thresholds(self, updates: dict[int, float]) -> TenantIndex:
        """A copy with new thresholds that shares the (immutable) FAISS index."""
        entries = [
            KeywordEntry(e.id, e.tenant, e.text, e.phonemes, updates.get(e.id, e.threshold), e.proxy)
            for e in self.entries
        ]
        return TenantIndex(self.dim, entries, self.backend, _faiss=self._index)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` cosine scores and ids per query, [n, k'] with k' = min(k, len); ids sorted by score."""
        k = min(k, len(self))
        n = len(queries)
        if k == 0 or n == 0:
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        scores, ids = self._index.search(np.ascontiguousarray(queries, np.float32), k)
        return scores, ids

    def thresholds_for(self, ids: np.ndarray) -> np.ndarray:
        """Thresholds for ``ids`` (any shape); ids not in the index get +inf (never detected)."""
        if len(self.ids) == 0:
            return np.full(ids.shape, np.inf, np.float32)
        pos = np.clip(np.searchsorted(self.ids, ids), 0, len(self.ids) - 1)
        found = self.ids[pos] == ids
        return np.where(found, self.thresholds[pos], np.inf).astype(np.float32)

    def subset(self, keyword_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, proxies, thresholds) of the requested ids that are enrolled here."""
        wanted = np.array(sorted(set(keyword_ids)), np.int64)
        if len(wanted) == 0 or len(self.ids) == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        pos = np.clip(np.searchsorted(self.ids, wanted), 0, len(self.ids) - 1)
        pos = pos[self.ids[pos] == wanted]
        return self.ids[pos], self.proxies[pos], self.thresholds[pos]


class KeywordIndex:
    """The current :class:`TenantIndex` per tenant, replaced (never mutated) on every change.

    Streams cache per-snapshot views by identity (a new snapshot is a new object). Writers serialize on an internal lock; readers take no lock (one attribute read).
    """

    def __init__(self, dim: int, prefer_gpu: bool = False) -> None:
        self.dim = dim
        self._lock = threading.Lock()
        self._gpu_resources: Any = None
        self.backend: IndexBackend = "cpu"
        if prefer_gpu and gpu_available():
            try:
                self._gpu_resources = faiss.StandardGpuResources()
                self.backend = "gpu"
            except Exception as e:  # a broken CUDA setup must not stop the service; CPU still works
                log.warning("FAISS GPU unavailable (%s); using the CPU index", e)
        self._tenants: MappingProxyType[str, TenantIndex] = MappingProxyType({})

    def _build(self, entries: Sequence[KeywordEntry]) -> TenantIndex:
        return TenantIndex(self.dim, entries, self.backend, self._gpu_resources)

    def _swap(self, tenant: str, new: TenantIndex) -> None:
        tenants = dict(self._tenants)
        if len(new):
            tenants[tenant] = new
        else:
            tenants.pop(tenant, None)
        self._tenants = MappingProxyType(tenants)

    def tenant(self, tenant: str) -> TenantIndex:
        t = self._tenants.get(tenant)
        return t if t is not None else self._build(())

    def tenants(self) -> list[str]:
        return sorted(self._tenants)

    def total(self) -> int:
        return sum(len(t) for t in self._tenants.values())

    def replace_all(self, entries: Iterable[KeywordEntry]) -> None:
        """Rebuild every tenant from ``entries`` (start-up: the store is the source of truth)."""
        by_tenant: dict[str, list[KeywordEntry]] = {}
        for e in entries:
            by_tenant.setdefault(e.tenant, []).append(e)
        with self._lock:
            self._tenants = MappingProxyType({t: self._build(es) for t, es in by_tenant.items()})

    def upsert(self, entries: Sequence[KeywordEntry]) -> None:
        """Add (or replace, by id) keywords; one new snapshot per tenant touched."""
        by_tenant: dict[str, list[KeywordEntry]] = {}
        for e in entries:
            by_tenant.setdefault(e.tenant, []).append(e)
        with self._lock:
            for tenant, new in by_tenant.items():
                new_ids = {e.id for e in new}
                kept = [e for e in self.tenant(tenant).entries if e.id not in new_ids]
                self._swap(tenant, self._build(kept + new))

    def remove(self, tenant: str, ids: Iterable[int]) -> None:
        gone = set(ids)
        with self._lock:
            current = self.tenant(tenant)
            if not gone & set(current.by_id):
                return
            self._swap(tenant, self._build([e for e in current.entries if e.id not in gone]))

    def set_thresholds(self, tenant: str, updates: dict[int, float]) -> None:
        with self._lock:
            self._swap(tenant, self.tenant(tenant).with_thresholds(updates))

"""Window embeddings against keyword proxies, behind one function: :func:`score_windows`.

Candidates per window are every keyword scoring at or above its threshold (its near-miss floor,
``threshold - margin``, in debug mode), exactly, with no top-k cut. On CPU one BLAS matrix product
per tenant covers the windows of all whole-tenant streams in the batch, then a threshold mask; a
stream limited to a keyword subset multiplies by its subset's proxies. A GPU index uses FAISS
top-k search instead (``top_k`` candidates per window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openkws.engine.index import TenantIndex
from openkws.engine.prefilter import ThresholdScorer

ROWS_PER_PRODUCT = 256  # windows per BLAS product (bounds the [n, K] similarity matrix)

KeywordView = tuple[np.ndarray, np.ndarray, np.ndarray]  # (ids [K], proxies [K, D], thresholds [K])


@dataclass(frozen=True)
class ScoreRequest:
    """The windows (``rows`` of the embedding matrix) of one stream and what to score them against."""

    rows: Sequence[int]
    tenant: TenantIndex
    subset: KeywordView | None = None  # None: the whole tenant
    margin: float = 0.0  # also return keywords this far below their threshold (near-misses)
    want_top: bool = False  # also return each window's best keyword, whatever its score
    group: object = None  # requests with equal (tenant, group) and no subset share one product


@dataclass
class WindowScores:
    """Keywords of one window at or above ``threshold - margin``, and its best keyword (``top``)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    top: tuple[int, float] = (-1, 0.0)  # (-1, 0.0): nothing enrolled, or not requested


def similarities(emb: np.ndarray, proxies: np.ndarray) -> np.ndarray:
    """Cosines [n, K] of L2-normalised window embeddings [n, D] with L2-normalised proxies [K, D]."""
    return np.asarray(emb @ proxies.T, np.float32)


def _search(emb: np.ndarray, req: ScoreRequest, top_k: int, out: list[WindowScores]) -> None:
    rows = list(req.rows)
    scores, ids = req.tenant.search(emb[rows], top_k)
    thr = req.tenant.thresholds_for(ids)
    for r, w in enumerate(rows):
        keep = scores[r] >= thr[r] - req.margin
        top = (int(ids[r][0]), float(scores[r][0])) if len(ids[r]) and ids[r][0] >= 0 else (-1, 0.0)
        out[w] = WindowScores(ids[r][keep], scores[r][keep], thr[r][keep], top)


def _product(emb: np.ndarray, view: KeywordView, rows: list[int], margin: np.ndarray, want_top: np.ndarray,
             out: list[WindowScores]) -> None:  # fmt: skip
    ids, prox, thr = view
    if len(ids) == 0:
        return
    scorer = _scorer(prox, thr)  # exact hits; an int8 prefilter for large keyword sets (prefilter.py)
    for c in range(0, len(rows), ROWS_PER_PRODUCT):
        part = rows[c : c + ROWS_PER_PRODUCT]
        hit_r, hit_k, hit_s = scorer.hits(emb[part], margin[part])
        bounds = np.searchsorted(hit_r, np.arange(len(part) + 1))
        for r, w in enumerate(part):
            lo, hi = bounds[r], bounds[r + 1]
            ks = hit_k[lo:hi]
            top = (-1, 0.0)
            if want_top[w]:
                sims = similarities(emb[w : w + 1], prox)[0]
                b = int(np.argmax(sims))
                top = (int(ids[b]), float(sims[b]))
            out[w] = WindowScores(ids[ks], hit_s[lo:hi], thr[ks], top)


@dataclass(frozen=True)
class _Cached:
    proxies: np.ndarray
    thresholds: np.ndarray
    scorer: ThresholdScorer


_SCORERS: dict[int, _Cached] = {}  # by id(proxies); an index snapshot's arrays never change


def _scorer(prox: np.ndarray, thr: np.ndarray) -> ThresholdScorer:
    hit = _SCORERS.get(id(prox))
    if hit is None or hit.proxies is not prox or hit.thresholds is not thr:
        if len(_SCORERS) > 256:
            _SCORERS.clear()
        hit = _Cached(prox, thr, ThresholdScorer(prox, thr))
        _SCORERS[id(prox)] = hit
    return hit.scorer


def score_windows(emb: np.ndarray, requests: Sequence[ScoreRequest], top_k: int = 16) -> list[WindowScores]:
    """Score window embeddings [n, D] for each request; one :class:`WindowScores` per window."""
    n = len(emb)
    out = [WindowScores() for _ in range(n)]
    margin = np.zeros(n, np.float32)
    want_top = np.zeros(n, bool)
    products: dict[tuple[int, object], tuple[KeywordView, list[int]]] = {}
    for req in requests:
        if not len(req.rows):
            continue
        if req.subset is None and req.tenant.backend == "gpu":
            _search(emb, req, top_k, out)
            continue
        rows = list(req.rows)
        margin[rows] = req.margin
        want_top[rows] = req.want_top
        t = req.tenant
        if req.subset is None:
            key: tuple[int, object] = (id(t), None)
            view: KeywordView = (t.ids, t.proxies, t.thresholds)
        else:
            key, view = (id(t), req.group), req.subset
        products.setdefault(key, (view, []))[1].extend(rows)
    for view, rows in products.values():
        _product(emb, view, rows, margin, want_top, out)
    return out

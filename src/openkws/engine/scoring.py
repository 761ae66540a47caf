"""Window embeddings against keyword proxies, behind one function: :func:`score_windows`.

Candidates per window are every keyword scoring at or above its threshold (its near-miss floor,
``threshold - margin``, in debug mode), exactly, with no top-k cut. On CPU one BLAS matrix product
per tenant covers the windows of all whole-tenant streams in the batch, then a threshold mask; a
stream limited to a keyword subset multiplies by its subset's proxies. A GPU index uses FAISS
top-k search instead (``top_k`` candidates per window).

With a :class:`~openkws.engine.cohort.Cohort` (cohort normalisation, issue 21), every score is the
cohort-normalised one (:meth:`Cohort.normalize`), thresholds included; the product is then exact on
CPU and GPU alike (a top-k over raw cosines would not be the top-k over normalised scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openkws.engine.cohort import Cohort
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


def _cohort_hits(
    emb: np.ndarray,
    prox: np.ndarray,
    thr: np.ndarray,
    margin: np.ndarray,
    cohort: Cohort,
    buckets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, keywords, scores) at or above ``thr - margin`` on the cohort scale, and all scores [n, K]."""
    z = cohort.normalize(similarities(emb, prox), emb, buckets)
    hit_r, hit_k = np.nonzero(z >= thr[None, :] - margin[:, None])
    return hit_r, hit_k, z[hit_r, hit_k], z


def _product(
    emb: np.ndarray,
    view: KeywordView,
    rows: list[int],
    margin: np.ndarray,
    want_top: np.ndarray,
    out: list[WindowScores],
    cohort: Cohort | None = None,
    buckets: np.ndarray | None = None,
) -> None:
    ids, prox, thr = view
    if len(ids) == 0:
        return
    for c in range(0, len(rows), ROWS_PER_PRODUCT):
        part = rows[c : c + ROWS_PER_PRODUCT]
        z: np.ndarray | None = None
        if cohort is not None and buckets is not None:
            hit_r, hit_k, hit_s, z = _cohort_hits(emb[part], prox, thr, margin[part], cohort, buckets)
        else:  # exact hits; an int8 prefilter for large keyword sets (prefilter.py)
            hit_r, hit_k, hit_s = _scorer(prox, thr).hits(emb[part], margin[part])
        bounds = np.searchsorted(hit_r, np.arange(len(part) + 1))
        for r, w in enumerate(part):
            lo, hi = bounds[r], bounds[r + 1]
            ks = hit_k[lo:hi]
            top = (-1, 0.0)
            if want_top[w]:
                sims = z[r] if z is not None else similarities(emb[w : w + 1], prox)[0]
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


_BUCKETS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(ids) -> (ids, cohort phone count per keyword)


def _buckets(cohort: Cohort, tenant: TenantIndex, ids: np.ndarray) -> np.ndarray:
    """Cohort phone count of each keyword of a view (cached per snapshot array)."""
    hit = _BUCKETS.get(id(ids))
    if hit is None or hit[0] is not ids:
        if len(_BUCKETS) > 256:
            _BUCKETS.clear()
        hit = (ids, cohort.buckets_of([tenant.by_id[int(k)].phonemes for k in ids]))
        _BUCKETS[id(ids)] = hit
    return hit[1]


def score_windows(
    emb: np.ndarray, requests: Sequence[ScoreRequest], top_k: int = 16, cohort: Cohort | None = None
) -> list[WindowScores]:
    """Score window embeddings [n, D] for each request; one :class:`WindowScores` per window.
    With ``cohort``, scores and thresholds are cohort-normalised (module docstring)."""
    n = len(emb)
    out = [WindowScores() for _ in range(n)]
    margin = np.zeros(n, np.float32)
    want_top = np.zeros(n, bool)
    products: dict[tuple[int, object], tuple[KeywordView, list[int], TenantIndex]] = {}
    for req in requests:
        if not len(req.rows):
            continue
        if req.subset is None and req.tenant.backend == "gpu" and cohort is None:
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
        products.setdefault(key, (view, [], t))[1].extend(rows)
    for view, rows, tenant in products.values():
        buckets = None if cohort is None or not len(view[0]) else _buckets(cohort, tenant, view[0])
        _product(emb, view, rows, margin, want_top, out, cohort, buckets)
    return out

"""The streaming wake-word protocol: match detections to ground truth, sweep thresholds, DET curves.

Rules (issue 5):

* a detection of keyword ``k`` is a **hit** when it falls inside ``[start, end + 0.5 s]`` of an
  occurrence of ``k`` in the same stream; each occurrence counts once however many detections it gets;
* every other detection of ``k`` is a **false alarm** (on negative streams and between keywords on
  positive streams alike); FA/h divides by the total duration of all streams scored;
* FRR = missed occurrences / occurrences.

Everything here is pure numpy on event lists, so it is tested on hand-made events
(``tests/bench/test_streaming.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.detectors.base import DetectorOutput, ScoreTrace, SweepEvents, events_at

HIT_TOLERANCE_S = 0.5
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Occurrence:
    """One keyword spoken in a stream, from ``start_s`` to ``end_s``."""

    keyword: str
    start_s: float
    end_s: float


@dataclass
class ScoredStream:
    """One stream's ground truth and one system's output on it."""

    name: str
    duration_s: float
    occurrences: list[Occurrence]
    output: DetectorOutput


def match(
    events: np.ndarray, starts: np.ndarray, ends: np.ndarray, tolerance_s: float = HIT_TOLERANCE_S
) -> tuple[int, int]:
    """Detections of one keyword vs its occurrences in one stream -> (occurrences hit, false alarms).

    ``starts``/``ends`` are sorted and non-overlapping once ``tolerance_s`` is added.

    >>> match(np.array([1.2, 5.0, 9.9]), np.array([1.0, 9.0]), np.array([1.5, 9.5]))
    (2, 1)
    >>> match(np.array([2.05]), np.array([1.0]), np.array([1.5]))  # 0.55 s late: miss + false alarm
    (0, 1)
    >>> match(np.array([1.1, 1.3, 1.9]), np.array([1.0]), np.array([1.5]))  # repeats inside: one hit
    (1, 0)
    >>> match(np.array([]), np.array([1.0]), np.array([1.5]))
    (0, 0)
    """
    events = np.asarray(events, dtype=np.float64)
    if events.size == 0:
        return 0, 0
    if starts.size == 0:
        return 0, int(events.size)
    pos = np.searchsorted(starts, events, side="right") - 1
    inside = (pos >= 0) & (events <= ends[np.clip(pos, 0, None)] + tolerance_s)
    return int(np.unique(pos[inside]).size), int(np.count_nonzero(~inside))


@dataclass
class DetCurve:
    """Counts at every sweep point ``j`` (thresholds from permissive to strict).

    ``hits[k, j]``/``fas[k, j]`` are per keyword so any keyword subset can be re-aggregated.
    """

    keywords: list[str]
    thresholds: np.ndarray  # [J]
    hits: np.ndarray  # [K, J] occurrences detected
    fas: np.ndarray  # [K, J] false alarms
    positives: np.ndarray  # [K] occurrences
    hours: float
    extra: dict[str, object] = field(default_factory=dict)

    def subset(self, keywords: Sequence[str]) -> DetCurve:
        idx = [self.keywords.index(k) for k in keywords]
        return DetCurve(
            list(keywords), self.thresholds, self.hits[idx], self.fas[idx], self.positives[idx], self.hours
        )

    @property
    def frr(self) -> np.ndarray:
        """[J] false-reject rate (nan when there are no positives)."""
        n = float(self.positives.sum())
        return 1.0 - self.hits.sum(axis=0) / n if n > 0 else np.full(self.thresholds.shape, np.nan)

    @property
    def fa_per_hour(self) -> np.ndarray:
        """[J] false alarms per hour of scored audio."""
        return self.fas.sum(axis=0) / self.hours if self.hours > 0 else np.full(self.thresholds.shape, np.nan)

    def operating_point(self, target_fa_per_hour: float) -> int | None:
        """Sweep index of the lowest-FRR point with FA/h <= target (None: no point gets that low)."""
        fa, frr = self.fa_per_hour, self.frr
        ok = np.flatnonzero(fa <= target_fa_per_hour + 1e-12)
        if ok.size == 0:
            return None
        best = ok[np.argmin(frr[ok])]
        # ties: prefer the most permissive threshold among equal FRR (lowest j), deterministic
        ties = ok[frr[ok] == frr[best]]
        return int(ties.min())

    def frr_at(self, target_fa_per_hour: float, mode: str = "step") -> float:
        """FRR at a false-alarm budget.

        ``step``: the best FRR any measured threshold achieves within the budget (conservative;
        1.0 when none does: an infinite threshold gives 0 FA and rejects everything).
        ``linear``: linear interpolation on the DET curve between the operating points around the
        target, with (0 FA/h, FRR 1) as the strict end point.
        """
        return frr_at_fa(self.fa_per_hour, self.frr, target_fa_per_hour, mode)

    def to_json(self) -> dict[str, object]:
        return {
            "keywords": self.keywords,
            "thresholds": self.thresholds.tolist(),
            "hits": self.hits.tolist(),
            "fas": self.fas.tolist(),
            "positives": self.positives.tolist(),
            "hours": self.hours,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> DetCurve:
        return cls(
            keywords=list(d["keywords"]),  # type: ignore[call-overload]
            thresholds=np.asarray(d["thresholds"], dtype=np.float64),
            hits=np.asarray(d["hits"], dtype=np.int64),
            fas=np.asarray(d["fas"], dtype=np.int64),
            positives=np.asarray(d["positives"], dtype=np.int64),
            hours=float(d["hours"]),  # type: ignore[arg-type]
            extra=dict(d.get("extra", {})),  # type: ignore[call-overload]
        )


def frr_at_fa(fa_per_hour: np.ndarray, frr: np.ndarray, target: float, mode: str = "step") -> float:
    """FRR at ``target`` FA/h from DET points (see :meth:`DetCurve.frr_at`).

    >>> fa, frr = np.array([4.0, 2.0, 1.0, 0.0]), np.array([0.1, 0.2, 0.3, 0.6])
    >>> frr_at_fa(fa, frr, 1.5), frr_at_fa(fa, frr, 1.5, "linear")
    (0.3, 0.25)
    >>> frr_at_fa(np.array([3.0]), np.array([0.2]), 1.0), round(frr_at_fa(np.array([3.0]), np.array([0.2]), 1.0, "linear"), 4)
    (1.0, 0.7333)
    """
    fa_per_hour, frr = np.asarray(fa_per_hour, float), np.asarray(frr, float)
    keep = ~(np.isnan(fa_per_hour) | np.isnan(frr))
    fa_per_hour, frr = fa_per_hour[keep], frr[keep]
    if mode == "step":
        ok = fa_per_hour <= target + 1e-12
        return float(frr[ok].min()) if ok.any() else 1.0
    if mode != "linear":
        raise ValueError(f"mode must be 'step' or 'linear', not {mode!r}")
    # lower envelope: at each FA/h level the best FRR reachable with at most that many FA/h
    fa = np.concatenate([[0.0], fa_per_hour])
    fr = np.concatenate([[1.0], frr])
    order = np.lexsort((fr, fa))
    fa, fr = fa[order], np.minimum.accumulate(fr[order])
    if target >= fa[-1]:
        return float(fr[-1])
    hi = int(np.searchsorted(fa, target, side="right"))
    lo = hi - 1
    if fa[hi] == fa[lo]:
        return float(fr[hi])
    w = (target - fa[lo]) / (fa[hi] - fa[lo])
    return float(fr[lo] + w * (fr[hi] - fr[lo]))


def threshold_grid(
    streams: Sequence[ScoredStream],
    keywords: Sequence[str],
    n_tail: int = 250,
    n_even: int = 50,
    n_top: int = 300,
) -> np.ndarray:
    """Thresholds for score traces, dense where the low-false-alarm end of the DET curve is decided.

    Quantiles of all scores: ``n_even`` evenly spaced, ``n_tail`` log-spaced into the upper tail;
    plus the ``n_top`` highest scores on streams with no keyword (each is a false alarm appearing),
    plus one value above every score (the "nothing fires" end: 0 FA/h, FRR 1).
    """
    every: list[np.ndarray] = []
    negative: list[np.ndarray] = []
    for st in streams:
        if not isinstance(st.output, ScoreTrace):
            raise TypeError("threshold_grid is for ScoreTrace outputs")
        for kw in keywords:
            s = st.output.scores.get(kw)
            if s is not None and s.size:
                every.append(s)
                if not st.occurrences:
                    negative.append(s)
    if not every:
        return np.array([np.inf])
    # float32 throughout: traces are float32, so every grid value splits the scores exactly
    pooled = np.concatenate(every).astype(np.float32)
    levels = np.concatenate([np.linspace(0.0, 1.0, n_even), 1.0 - np.logspace(-6, np.log10(0.5), n_tail)])
    q = np.quantile(pooled, np.clip(levels, 0.0, 1.0)).astype(np.float32)
    neg = np.concatenate(negative).astype(np.float32) if negative else pooled
    top = np.sort(neg)[-n_top:]
    strict = np.nextafter(pooled.max(), np.float32(np.inf))
    return np.unique(np.concatenate([q, top, [strict]])).astype(np.float64)


MAX_FA_PER_HOUR = 50.0  # the sweep stops once the whole set exceeds this (far past any target)


def sweep(
    streams: Sequence[ScoredStream],
    keywords: Sequence[str],
    tolerance_s: float = HIT_TOLERANCE_S,
    max_fa_per_hour: float = MAX_FA_PER_HOUR,
) -> DetCurve:
    """Count hits and false alarms for every keyword at every sweep point over all streams.

    Thresholds are visited from strictest to most permissive, and the sweep stops after the first
    one whose false-alarm rate over the set exceeds ``max_fa_per_hour``; the curve holds the points
    visited (a permissive end that fires constantly costs time and says nothing about the targets).
    """
    keywords = list(keywords)
    if not streams:
        raise ValueError("no streams to score")
    kinds = {type(st.output) for st in streams}
    if len(kinds) != 1:
        raise TypeError(f"mixed output kinds {kinds}; one system per sweep")
    if kinds == {SweepEvents}:
        grids = [np.asarray(st.output.thresholds) for st in streams]  # type: ignore[union-attr]
        if any(g.shape != grids[0].shape or not np.array_equal(g, grids[0]) for g in grids):
            raise ValueError("SweepEvents streams disagree on the threshold grid")
        thresholds, given = grids[0], None
    else:
        thresholds = threshold_grid(streams, keywords)
        given = thresholds
    K, J = len(keywords), thresholds.size
    hits = np.zeros((K, J), np.int64)
    fas = np.zeros((K, J), np.int64)
    positives = np.zeros(K, np.int64)
    hours = sum(st.duration_s for st in streams) / SECONDS_PER_HOUR
    truth: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for st in streams:
        per = []
        for k, kw in enumerate(keywords):
            occ = sorted((o for o in st.occurrences if o.keyword == kw), key=lambda o: o.start_s)
            per.append(
                (np.array([o.start_s for o in occ], np.float64), np.array([o.end_s for o in occ], np.float64))
            )
            positives[k] += len(occ)
        truth.append(per)
    first = 0
    for j in range(J - 1, -1, -1):
        for st, per in zip(streams, truth, strict=True):
            for k, kw in enumerate(keywords):
                h, f = match(events_at(st.output, kw, j, given), per[k][0], per[k][1], tolerance_s)
                hits[k, j] += h
                fas[k, j] += f
        if hours > 0 and fas[:, j].sum() / hours > max_fa_per_hour:
            first = j
            break
    sl = slice(first, J)
    return DetCurve(keywords, thresholds[sl], hits[:, sl], fas[:, sl], positives, hours)


def detection_delays(
    streams: Sequence[ScoredStream],
    keywords: Sequence[str],
    threshold: float,
    tolerance_s: float = HIT_TOLERANCE_S,
) -> np.ndarray:
    """Seconds from each detected occurrence's end to its first detection, at one threshold.

    ``threshold`` is a value of the sweep (for :class:`SweepEvents`, one of its grid values). The
    delay is algorithmic: when the audio that triggers the detection ends, not compute time.

    >>> from bench.detectors.base import ScoreTrace
    >>> t = np.arange(0, 10, 0.1)
    >>> s = ((t > 3.05) & (t < 3.5)).astype(np.float32)
    >>> st = ScoredStream("x", 10.0, [Occurrence("k", 2.5, 3.0)], ScoreTrace(t, {"k": s}))
    >>> detection_delays([st], ["k"], 0.5).round(2).tolist()
    [0.1]
    """
    out: list[float] = []
    for st in streams:
        if isinstance(st.output, SweepEvents):
            hit = np.flatnonzero(np.isclose(st.output.thresholds, threshold))
            if hit.size == 0:
                raise ValueError(f"threshold {threshold} is not on the decoder's grid")
            j, grid = int(hit[0]), None
        else:
            j, grid = 0, np.array([threshold])
        for kw in keywords:
            ev = np.sort(events_at(st.output, kw, j, grid))
            for o in st.occurrences:
                if o.keyword != kw:
                    continue
                inside = ev[(ev >= o.start_s) & (ev <= o.end_s + tolerance_s)]
                if inside.size:
                    out.append(float(inside[0] - o.end_s))
    return np.asarray(out, np.float64)


def summarize(
    curve: DetCurve, targets: Sequence[float] = (0.5, 1.0), groups: dict[str, list[str]] | None = None
) -> dict[str, object]:
    """FRR at each FA/h target, and per keyword group at the overall operating point.

    ``groups`` maps a label (e.g. ``"2 words"``) to its keywords; each group's FRR is read at the
    threshold chosen for the whole set, which is how a deployment with one global threshold behaves.
    """
    out: dict[str, object] = {
        "positives": int(curve.positives.sum()),
        "hours": curve.hours,
        "keywords": len(curve.keywords),
    }
    for target in targets:
        key = f"{target:g}"
        j = curve.operating_point(target)
        entry: dict[str, object] = {
            "frr": curve.frr_at(target, "step"),
            "frr_linear": curve.frr_at(target, "linear"),
            "threshold": None if j is None else float(curve.thresholds[j]),
            "fa_per_hour": None if j is None else float(curve.fa_per_hour[j]),
        }
        if groups:
            by: dict[str, object] = {}
            for label, kws in groups.items():
                kws = [k for k in kws if k in curve.keywords]
                if not kws:
                    continue
                sub = curve.subset(kws)
                by[label] = {
                    "keywords": len(kws),
                    "positives": int(sub.positives.sum()),
                    "frr": 1.0 if j is None else float(sub.frr[j]),
                    "fa_per_hour": 0.0 if j is None else float(sub.fa_per_hour[j]),
                }
            entry["by_group"] = by
        out[key] = entry
    return out

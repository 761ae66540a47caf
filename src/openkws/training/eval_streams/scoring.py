"""Events -> hits, false alarms, FRR at a false-alarm budget per keyword, detection delay.

Rules:

* an event of keyword ``k`` is a **hit** of a placed clip of ``k`` when its detected window overlaps
  at least half of the clip's speech (systems that report only a time: the time lies in
  ``[start, end + 0.5 s]``); the clip's *level* is the best score among its hits;
* **false alarms** are counted on the negative streams only, and for keyword ``k`` only outside the
  segments whose transcript contains ``k``'s text; those segments' duration is also left out of
  ``k``'s hours. FA/h per keyword = sum of false alarms / sum of keyword-hours;
* one global threshold per system is swept (the operating point of a user who sets one value);
  FRR at a budget is read at the most permissive threshold within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openkws.training.eval_streams.build import Stream
from openkws.training.eval_streams.engine_adapter import Event
from openkws.training.eval_streams.sources import contains_text

HIT_TOLERANCE_S = 0.5
TARGETS = (0.1, 0.5, 1.0)


@dataclass
class Scores:
    """One system's outcome on the whole protocol."""

    keywords: list[str]
    pos_keyword: list[str] = field(default_factory=list)
    pos_condition: list[str] = field(default_factory=list)
    pos_level: list[float] = field(default_factory=list)  # -inf: never detected
    pos_hits: list[list[tuple[float, float]]] = field(default_factory=list)  # (score, delay s) per hit
    neg: dict[str, list[float]] = field(default_factory=dict)  # keyword -> false-alarm scores
    neg_kind: dict[str, list[str]] = field(default_factory=dict)  # source kind of each false alarm
    hours: dict[str, float] = field(default_factory=dict)  # keyword -> negative hours counted
    negative_hours: float = 0.0

    def levels(self) -> np.ndarray:
        return np.asarray(self.pos_level, np.float64)

    def all_fa(self) -> np.ndarray:
        """Every false-alarm score, descending (cached until the next :func:`score_stream`)."""
        n = sum(len(v) for v in self.neg.values())
        if getattr(self, "_fa_cache", (None, -1))[1] != n:
            fa = np.sort(
                np.concatenate([np.asarray(v, np.float64) for v in self.neg.values()] or [np.zeros(0)])
            )[::-1]
            self._fa_cache = (fa, n)
        return self._fa_cache[0]

    def fa_counts(self, thresholds: np.ndarray) -> np.ndarray:
        """False alarms at or above each threshold (vectorised)."""
        asc = self.all_fa()[::-1]
        return len(asc) - np.searchsorted(asc, np.asarray(thresholds, np.float64), side="left")

    @property
    def keyword_hours(self) -> float:
        return float(sum(self.hours.values()))

    def threshold_at(self, fa_per_kw_hour: float) -> float:
        """The most permissive threshold with FA/h per keyword <= the budget."""
        fa = self.all_fa()
        m = int(np.floor(fa_per_kw_hour * self.keyword_hours + 1e-9))
        return -np.inf if m >= len(fa) else float(np.nextafter(fa[m], np.inf))

    def fa_per_kw_hour(self, threshold: float) -> float:
        return float((self.all_fa() >= threshold).sum() / max(self.keyword_hours, 1e-12))

    def frr(self, threshold: float, mask: np.ndarray | None = None) -> float:
        lv = self.levels() if mask is None else self.levels()[mask]
        return float(np.mean(lv < threshold)) if len(lv) else float("nan")

    def delays(self, threshold: float) -> np.ndarray:
        out = [min((d for s, d in hits if s >= threshold), default=np.nan) for hits in self.pos_hits]
        a = np.asarray(out, np.float64)
        return a[~np.isnan(a)]


def _is_hit(e: Event, start: float, end: float) -> bool:
    if e.end_s <= e.start_s:  # time-only systems
        return start <= e.end_s <= end + HIT_TOLERANCE_S
    overlap = min(e.end_s, end) - max(e.start_s, start)
    return overlap >= 0.5 * (end - start)


def score_stream(sc: Scores, stream: Stream, events: Sequence[Event]) -> None:
    """Add one stream's events to ``sc`` (positives: levels and delays; negatives: false alarms)."""
    if stream.condition != "negative":
        by_kw: dict[str, list[Event]] = {}
        for e in events:
            by_kw.setdefault(e.keyword, []).append(e)
        for p in stream.placed:
            hits = [e for e in by_kw.get(p.keyword, []) if _is_hit(e, p.start_s, p.end_s)]
            sc.pos_keyword.append(p.keyword)
            sc.pos_condition.append(stream.condition)
            sc.pos_level.append(max((e.score for e in hits), default=-np.inf))
            sc.pos_hits.append([(e.score, e.decided_s - p.end_s) for e in hits])
        return
    hours = stream.duration_s / 3600.0
    sc.negative_hours += hours
    excluded: dict[str, list[tuple[float, float]]] = {}
    for a, b, _kind, text in stream.spans:
        if not text:
            continue
        for k in sc.keywords:
            if contains_text(text, k):
                excluded.setdefault(k, []).append((a, b))
    for k in sc.keywords:
        sc.hours[k] = sc.hours.get(k, 0.0) + hours - sum(b - a for a, b in excluded.get(k, [])) / 3600.0
    starts = np.asarray([sp[0] for sp in stream.spans], np.float64)
    for e in events:
        t = 0.5 * (e.start_s + e.end_s) if e.end_s > e.start_s else e.end_s
        ex = excluded.get(e.keyword)
        if ex and any(a - 0.5 <= t <= b + 0.5 for a, b in ex):
            continue
        i = int(np.searchsorted(starts, t + 1.0, side="right")) - 1  # the span starting last before t (+1 s)
        kind = stream.spans[i][2] if i >= 0 and t <= stream.spans[i][1] + 1.0 else "gap"
        sc.neg.setdefault(e.keyword, []).append(e.score)
        sc.neg_kind.setdefault(e.keyword, []).append(kind)


def phone_group(n: int) -> str:
    return "1-3" if n <= 3 else "4-5" if n <= 5 else "6-8" if n <= 8 else "9+"


def summarize(sc: Scores, phones: dict[str, int], targets: Sequence[float] = TARGETS) -> dict[str, object]:
    """FRR per budget (overall, per condition, per phone-length group), FA/h and delay."""
    conds = np.asarray(sc.pos_condition)
    groups = np.asarray([phone_group(phones.get(k, 0)) for k in sc.pos_keyword])
    by_target: dict[str, object] = {}
    out: dict[str, object] = {
        "positives": len(sc.pos_level),
        "keywords": len(sc.keywords),
        "negative_hours": round(sc.negative_hours, 4),
        "keyword_hours": round(sc.keyword_hours, 2),
        "targets": by_target,
    }
    for t in targets:
        thr = sc.threshold_at(t)
        d = sc.delays(thr)
        total = float((sc.all_fa() >= thr).sum() / max(sc.negative_hours, 1e-12))
        by_target[f"{t:g}"] = {
            "threshold": None if not np.isfinite(thr) else thr,
            "frr": sc.frr(thr),
            "fa_per_keyword_hour": sc.fa_per_kw_hour(thr),
            "fa_per_hour_total": total,
            "by_condition": {c: sc.frr(thr, conds == c) for c in dict.fromkeys(sc.pos_condition)},
            "by_phones": {
                g: {"frr": sc.frr(thr, groups == g), "n": int((groups == g).sum())}
                for g in ("1-3", "4-5", "6-8", "9+")
                if (groups == g).any()
            },
            "delay_ms": {
                "p50": float(np.percentile(d, 50) * 1e3) if len(d) else None,
                "p95": float(np.percentile(d, 95) * 1e3) if len(d) else None,
                "n": int(len(d)),
            },
        }
    return out

"""Per-keyword scores over time (:class:`ScoreTrace`): why a keyword fired, or why it did not.

:class:`TraceRecorder` is a stream's public score hook (``Spotter.create_stream(score_hook=...)``):
at every evaluated frame (one per feature hop, 80 ms with the packaged model) it keeps, for each
keyword the stream matches, the best cosine of any window ending there. That is the number the
detector compares with the keyword's threshold, so a line that never crosses its dashed threshold
is a miss, and its peak says by how much. The library (``Stream.trace()``,
``KeywordSpotter.detect_file(trace=True)``), ``POST /v1/detect?trace=true`` and
``openkws detect --plot`` all use it.

Example (scores made up: one keyword, three frames):
    >>> times = np.array([80.0, 160.0, 240.0])
    >>> k = KeywordTrace(1, "hey jarvis", 0.6, times, np.array([0.2, 0.55, 0.3]))
    >>> t = ScoreTrace(times, (k,), detections=(), near_misses=())
    >>> k = t.keyword("hey jarvis")
    >>> (k.peak, k.peak_ms, k.crossed)
    (0.55, 160.0, False)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import Detection, FrameScores, NearMiss
from openkws.engine.index import KeywordIndex

if TYPE_CHECKING:
    from openkws.engine.stream import KeywordStream

__all__ = ["KeywordTrace", "ScoreTrace", "TraceRecorder"]


@dataclass(frozen=True, eq=False)  # numpy fields: compare the arrays, not the objects
class KeywordTrace:
    """One keyword's scores over time.

    ``scores[i]``: the best cosine of any window ending at ``times_ms[i]`` (NaN where the keyword
    was not enrolled yet); ``threshold``: its threshold at the end of the trace.
    """

    keyword_id: int
    text: str
    threshold: float
    times_ms: np.ndarray = field(repr=False)  # [T], shared with ScoreTrace.times_ms
    scores: np.ndarray = field(repr=False)  # [T] float32

    @property
    def peak(self) -> float:
        """The highest score (NaN if the keyword was never scored)."""
        s = self.scores[np.isfinite(self.scores)]
        return round(float(s.max()), 6) if len(s) else float("nan")

    @property
    def peak_index(self) -> int:
        """Index of the peak in ``scores`` (-1 if never scored)."""
        if not np.isfinite(self.scores).any():
            return -1
        return int(np.nanargmax(self.scores))

    @property
    def peak_ms(self) -> float:
        """When the peak happened (NaN if never scored)."""
        i = self.peak_index
        return float(self.times_ms[i]) if i >= 0 else float("nan")

    @property
    def crossed(self) -> bool:
        """True when some score reached the threshold (the detector may still have held it back:
        a better keyword won the same audio, or the refractory period)."""
        return bool(np.nanmax(self.scores, initial=-np.inf) >= self.threshold)


@dataclass(frozen=True, eq=False)
class ScoreTrace:
    """Scores over time for every keyword a stream matched, with what the detector decided.

    ``times_ms`` [T]: stream time of the end of each evaluated frame's windows (the last ones reach
    past the end of the audio, into the silence that flushes a keyword at the very end);
    ``keywords``: one :class:`KeywordTrace` per keyword, by id; ``detections``: the events;
    ``near_misses``: keywords that came within ``DetectorConfig.near_miss_margin`` (0.15) of their
    threshold without firing, or lost to a better keyword over the same audio.
    """

    times_ms: np.ndarray
    keywords: tuple[KeywordTrace, ...]
    detections: tuple[Detection, ...]
    near_misses: tuple[NearMiss, ...]

    def keyword(self, key: int | str) -> KeywordTrace:
        """The trace of one keyword, by id or by (normalised) text; raises ``KeyError``."""
        for k in self.keywords:
            if k.keyword_id == key or k.text == key:
                return k
        raise KeyError(f"no keyword {key!r} in the trace; it has {[k.text for k in self.keywords]}")


class TraceRecorder:
    """A score hook that records every keyword's best window score per frame.

    Give it to ``Spotter.create_stream(score_hook=recorder)``, then :meth:`attach` the stream (its
    VAD gate, if any, maps engine time back to stream time). It scores against the tenant's current
    keywords (``keyword_subset``: only those), one small matrix product per frame.
    """

    def __init__(self, index: KeywordIndex, tenant: str, keyword_subset: Iterable[int] | None = None) -> None:
        self._index = index
        self._tenant = tenant
        self._subset = None if keyword_subset is None else frozenset(keyword_subset)
        self._stream: KeywordStream | None = None
        self._times: list[float] = []
        self._rows: list[dict[int, float]] = []
        self._meta: dict[int, tuple[str, float]] = {}
        self._detections: list[Detection] = []
        self._near: list[NearMiss] = []

    def attach(self, stream: KeywordStream) -> None:
        self._stream = stream

    def __call__(self, fs: FrameScores) -> None:
        if not len(fs.embeddings):  # no window holds real audio (all pre-roll): nothing was scored
            return
        t = self._index.tenant(self._tenant)
        ids, proxies, thresholds = (
            (t.ids, t.proxies, t.thresholds) if self._subset is None else t.subset(self._subset)
        )
        row: dict[int, float] = {}
        if len(ids) and len(fs.embeddings):
            best = (fs.embeddings @ proxies.T).max(axis=0)
            for kid, score, thr in zip(ids.tolist(), best.tolist(), thresholds.tolist(), strict=True):
                row[kid] = score
                self._meta[kid] = (t.by_id[kid].text, round(float(thr), 6))
        ms = fs.time_ms
        if self._stream is not None:  # unclipped: the end-of-stream flush frames keep distinct times
            p = self._stream.params
            ms = 1000.0 * (fs.frame * p.hop + p.receptive - p.preroll) / SAMPLE_RATE
            if self._stream.gate is not None:
                ms = self._stream.gate.stream_ms(ms, end=True)
        self._times.append(ms)
        self._rows.append(row)

    def record(self, detections: Iterable[Detection], near_misses: Iterable[NearMiss]) -> None:
        """Add what a decode returned (the recorder sees scores, not decisions)."""
        self._detections += detections
        self._near += near_misses

    def trace(self) -> ScoreTrace:
        """The trace so far (a snapshot; recording goes on)."""
        times = np.array(self._times, np.float64)
        keywords = []
        for kid in sorted(self._meta):
            text, thr = self._meta[kid]
            scores = np.array([r.get(kid, np.nan) for r in self._rows], np.float32)
            keywords.append(KeywordTrace(kid, text, thr, times, scores))
        return ScoreTrace(times, tuple(keywords), tuple(self._detections), tuple(self._near))

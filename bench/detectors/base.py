"""The one interface every benchmarked system implements, and its two output shapes.

A detector is enrolled once with a keyword list, then ``process`` runs it over one whole stream
(16 kHz mono) exactly as its streaming API would see it, chunk by chunk. It returns either

* :class:`ScoreTrace` -- a score per keyword at every decision step (openkws, openWakeWord,
  EfficientWord-Net). The threshold sweep is then done offline from the trace, without re-running; or
* :class:`SweepEvents` -- for decoders whose threshold changes the search output (pocketsphinx):
  the event times found at each threshold of a fixed grid, all produced in one pass.

Either way :func:`events_at` turns an output into detection times for one keyword at one threshold,
so the protocol code never needs to know which kind of system it scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

# After a detection the same keyword cannot fire again for this long (openkws' default refractory,
# EfficientWord-Net's relaxation time); every trace-scored system gets the same rule.
REFRACTORY_S = 1.0


@dataclass
class ScoreTrace:
    """``scores[kw][i]`` is the score available at ``times[i]`` seconds (end of the audio it saw)."""

    times: np.ndarray  # [T] float64, non-decreasing
    scores: dict[str, np.ndarray]  # keyword -> [T] float32

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        for kw, s in self.scores.items():
            s = np.asarray(s, dtype=np.float32)
            if s.shape != self.times.shape:
                raise ValueError(f"trace for {kw!r} has shape {s.shape}; times have {self.times.shape}")
            self.scores[kw] = s


@dataclass
class SweepEvents:
    """``events[kw][j]``: detection times (s) when the decoder runs at ``thresholds[j]``.

    ``thresholds`` are in the system's own units, ordered from most permissive to strictest.
    """

    thresholds: np.ndarray  # [J]
    events: dict[str, list[np.ndarray]] = field(default_factory=dict)


DetectorOutput = ScoreTrace | SweepEvents


def trace_events(
    times: np.ndarray, scores: np.ndarray, threshold: float, refractory_s: float = REFRACTORY_S
) -> np.ndarray:
    """Detection times from one score trace at one threshold.

    A detection fires at the first frame with ``score >= threshold``; the same keyword then stays
    silent for ``refractory_s`` seconds, after which any frame still above threshold fires again
    (a score that stays high keeps firing, as a live detector would).

    >>> t = np.arange(10) * 0.1
    >>> trace_events(t, np.array([0, .9, .9, 0, 0, 0, 0, 0, 0, .9]), 0.5, refractory_s=0.25).tolist()
    [0.1, 0.9]
    >>> trace_events(t, np.array([0, .9, .9, 0, 0, 0, 0, 0, 0, .9]), 0.5, refractory_s=1.0).tolist()
    [0.1]
    >>> trace_events(t, np.ones(10), 0.5, refractory_s=0.3).round(2).tolist()  # a plateau fires every 0.3 s
    [0.0, 0.3, 0.6, 0.9]
    >>> trace_events(t, np.zeros(10), 0.5).tolist()
    []
    """
    idx = np.flatnonzero(scores >= np.asarray(threshold, dtype=scores.dtype))
    if idx.size == 0:
        return np.zeros(0, np.float64)
    t = times[idx]
    eps = 1e-9
    # Runs separated by more than the refractory time are independent: each starts with a detection.
    gaps = np.diff(t)
    new_run = np.concatenate([[True], gaps > refractory_s + eps])
    starts = np.flatnonzero(new_run)
    ends = np.concatenate([starts[1:], [t.size]])
    if starts.size == t.size:  # every above-threshold frame is isolated: the common, cheap case
        return t
    out: list[np.ndarray] = []
    for a, b in zip(starts, ends, strict=True):
        if b - a == 1 or t[b - 1] - t[a] < refractory_s - eps:
            out.append(t[a : a + 1])
            continue
        # greedy within the run: next detection = first above-threshold frame >= last + refractory
        run = t[a:b]
        picked = [0]
        while True:
            nxt = int(np.searchsorted(run, run[picked[-1]] + refractory_s - eps, side="left"))
            if nxt >= run.size:
                break
            picked.append(nxt)
        out.append(run[picked])
    return np.concatenate(out)


def events_at(
    output: DetectorOutput, keyword: str, j: int, thresholds: np.ndarray | None = None
) -> np.ndarray:
    """Detection times of ``keyword`` at sweep point ``j``.

    For a :class:`ScoreTrace` the sweep grid ``thresholds`` is chosen by the caller; for
    :class:`SweepEvents` it is the decoder's own grid and ``thresholds`` must be ``None``.
    """
    if isinstance(output, SweepEvents):
        per = output.events.get(keyword)
        return np.zeros(0, np.float64) if per is None else np.asarray(per[j], np.float64)
    if thresholds is None:
        raise ValueError("a ScoreTrace needs the threshold grid to turn scores into events")
    s = output.scores.get(keyword)
    if s is None:
        return np.zeros(0, np.float64)
    return trace_events(output.times, s, float(thresholds[j]))


class Detector(ABC):
    """A benchmarked keyword spotter.

    Attributes:
        name: short id used in file names and tables (``openkws``, ``pocketsphinx``...).
        version: the installed package version (reported in the docs).
        open_vocabulary: whether any text keyword can be enrolled (set (b) needs it).
        install: one line saying how it installs offline.
    """

    name: str = ""
    version: str = ""
    open_vocabulary: bool = True
    install: str = ""
    needs_templates: bool = False  # audio-enrolled: enroll() must receive templates

    @abstractmethod
    def enroll(self, keywords: list[str], templates: dict[str, list[np.ndarray]] | None = None) -> None:
        """Replace the enrolled keyword set. ``templates``: 16 kHz float32 clips per keyword."""

    @abstractmethod
    def process(self, audio: np.ndarray) -> DetectorOutput:
        """Run over one whole stream (16 kHz mono float32 in [-1, 1]) from a fresh stream state."""

    def supports(self, keyword: str) -> bool:
        """Whether ``keyword`` can be enrolled (closed-vocabulary systems: only their own words)."""
        return self.open_vocabulary

    def score_clip(self, audio: np.ndarray, keyword: str) -> float:
        """Pairs protocol: a match score for one (clip, text) pair; higher = more likely a match."""
        raise NotImplementedError(f"{self.name} cannot score (audio, text) pairs")

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing native
        """Release native resources."""

"""Per-stream detection decisions: one event per spoken keyword.

Input, once per evaluated frame (in stream order): for each keyword, the best score over all window
lengths ending at that frame and that window's span. A keyword crossing its threshold opens a
*candidate*; the candidate keeps the peak (score and window) while the score stays above threshold,
and is emitted when the score drops below threshold, when ``hold_frames`` have passed since it opened,
or when the stream finishes. After an event the keyword is refractory: for ``refractory_frames``
frames no new candidate opens, and afterwards windows that overlap the emitted window by more than
``max_overlap`` of their length are still taken as the same utterance (long windows keep seeing a
keyword for a while after it was spoken).

All times are frame indices, so the decisions do not depend on how audio was chunked.

Example:
    >>> d = Decider(hold_frames=3, refractory_frames=5)
    >>> thr = {7: 0.5}
    >>> out = []
    >>> for t, s in enumerate([0.1, 0.6, 0.8, 0.7, 0.2, 0.9, 0.1]):
    ...     out += d.step(t, {7: Hit(s, t - 3, t)} if s >= 0.5 else {}, thr.__contains__)
    >>> [(c.keyword_id, c.score, c.start_frame, c.end_frame, c.decided_frame) for c in out]
    [(7, 0.8, -1, 2, 4)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """Best window of one keyword at one frame: score and window span [start_frame, end_frame]."""

    score: float
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class Decision:
    keyword_id: int
    score: float
    start_frame: int
    end_frame: int
    decided_frame: int


@dataclass
class _Candidate:
    peak: Hit
    opened: int


class Decider:
    """Debounce state of one stream (a few dicts; created and freed with the stream)."""

    def __init__(self, hold_frames: int, refractory_frames: int, max_overlap: float = 0.5) -> None:
        if hold_frames < 0 or refractory_frames < 0:
            raise ValueError("hold_frames and refractory_frames must be >= 0")
        self.hold_frames = hold_frames
        self.refractory_frames = refractory_frames
        self.max_overlap = max_overlap
        self._open: dict[int, _Candidate] = {}
        self._last: dict[int, Decision] = {}

    def reset(self) -> None:
        self._open.clear()
        self._last.clear()

    def _suppressed(self, keyword_id: int, hit: Hit, frame: int) -> bool:
        last = self._last.get(keyword_id)
        if last is None:
            return False
        if frame - last.decided_frame < self.refractory_frames:
            return True
        overlap = min(hit.end_frame, last.end_frame) - max(hit.start_frame, last.start_frame) + 1
        return overlap > self.max_overlap * (hit.end_frame - hit.start_frame + 1)

    def step(self, frame: int, above: dict[int, Hit], enrolled: Callable[[int], bool]) -> list[Decision]:
        """Advance to ``frame`` with the keywords scoring at or above their threshold there.

        ``enrolled(id)`` says whether a keyword still exists (deleted ones are dropped, never emitted).
        """
        out: list[Decision] = []
        for kid, hit in above.items():
            cand = self._open.get(kid)
            if cand is not None:
                if hit.score > cand.peak.score:
                    cand.peak = hit
            elif not self._suppressed(kid, hit, frame):
                self._open[kid] = _Candidate(hit, frame)
        for kid in list(self._open):
            cand = self._open[kid]
            if not enrolled(kid):
                del self._open[kid]
            elif kid not in above or frame - cand.opened >= self.hold_frames:
                out.append(self._emit(kid, cand, frame))
        return out

    def finish(self, frame: int, enrolled: Callable[[int], bool]) -> list[Decision]:
        """End of stream: emit every open candidate that is still enrolled."""
        out = [self._emit(kid, c, frame) for kid, c in list(self._open.items()) if enrolled(kid)]
        self._open.clear()
        return out

    def _emit(self, kid: int, cand: _Candidate, frame: int) -> Decision:
        d = Decision(kid, cand.peak.score, cand.peak.start_frame, cand.peak.end_frame, frame)
        self._last[kid] = d
        self._open.pop(kid, None)
        return d

    def forget(self, keep: Callable[[int], bool]) -> None:
        """Drop refractory state of keywords no longer enrolled (bounds memory on long streams)."""
        for kid in [k for k in self._last if not keep(k)]:
            del self._last[kid]

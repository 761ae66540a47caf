"""Per-stream detection decisions: one event per spoken keyword.

Input, once per evaluated frame (in stream order): for each keyword, the best score over all window
lengths ending at that frame and that window's span. A keyword crossing its threshold opens a
*candidate*; the candidate keeps the peak (score and window) while the score stays above threshold,
and is emitted when the score drops below threshold, when ``hold_frames`` have passed since it opened,
or when the stream finishes. After an event the keyword is refractory: for ``refractory_frames``
frames no new candidate opens, and afterwards windows that overlap the emitted window by more than
``max_overlap`` of their length are still taken as the same utterance (long windows keep seeing a
keyword for a while after it was spoken).

Keyword competition (``competition="best"``, the default): when candidates of several keywords
cover the same audio (their peak windows overlap by more than ``max_overlap``, the rule that makes
two windows one utterance of the same keyword), only the best-scoring one is emitted; a ready candidate waits (at most
``hold_frames``) for overlapping candidates still open, and a candidate over audio already claimed
by another keyword's event is dropped. The losers are returned by :meth:`Decider.take_lost` (debug
near-misses). ``competition="all"`` emits every keyword independently.

Decision modes (``mode``):

* ``"hold"`` (the default): the candidate is emitted when its score drops below threshold or
  ``hold_frames`` after it opened, with the best peak seen until then.
* ``"peak"`` (issue 21, for windows trained to peak at the keyword's end): the candidate is emitted
  as soon as its score stops rising, i.e. at frame ``t + 1`` when ``s(t) >= threshold`` and
  ``s(t + 1) < s(t)`` (a fall below threshold counts), and at the latest ``hold_frames`` after the
  first over-threshold frame. The engine sets ``hold_frames`` to its ``peak_max_ms`` (200 ms) here.

``persistence`` (both modes, default 1): a candidate must be over threshold on that many
consecutive frames before it may be emitted; a shorter run is dropped (a debounce against one-frame
blips), and the deadline is never earlier than the frame that completes the run.

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
from typing import Literal

Competition = Literal["best", "all"]
COMPETITIONS: tuple[Competition, ...] = ("best", "all")
DecisionMode = Literal["hold", "peak"]
DECISION_MODES: tuple[DecisionMode, ...] = ("hold", "peak")


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
    last: float  # score at the latest frame (peak mode: has it stopped rising?)
    run: int = 1  # consecutive over-threshold frames so far
    peaked: bool = False  # peak mode: the score has fallen once since opening (sticky)


def _overlap(a: Hit | Decision, b: Hit | Decision) -> float:
    """Frames shared by two windows, as a fraction of the first one's length."""
    shared = min(a.end_frame, b.end_frame) - max(a.start_frame, b.start_frame) + 1
    return shared / (a.end_frame - a.start_frame + 1)


class Decider:
    """Debounce state of one stream (a few dicts; created and freed with the stream)."""

    def __init__(
        self,
        hold_frames: int,
        refractory_frames: int,
        max_overlap: float = 0.5,
        competition: Competition = "all",
        mode: DecisionMode = "hold",
        persistence: int = 1,
    ) -> None:
        if hold_frames < 0 or refractory_frames < 0:
            raise ValueError("hold_frames and refractory_frames must be >= 0")
        if competition not in COMPETITIONS:
            raise ValueError(f"competition {competition!r}; expected one of {COMPETITIONS}")
        if mode not in DECISION_MODES:
            raise ValueError(f"decision mode {mode!r}; expected one of {DECISION_MODES}")
        if persistence < 1:
            raise ValueError(f"persistence must be >= 1 consecutive frames, got {persistence}")
        self.mode: DecisionMode = mode
        self.persistence = persistence
        self.hold_frames = hold_frames
        self.refractory_frames = refractory_frames
        self.max_overlap = max_overlap
        self.competition = competition
        self._open: dict[int, _Candidate] = {}
        self._last: dict[int, Decision] = {}
        self._lost: list[Decision] = []

    def reset(self) -> None:
        self._open.clear()
        self._last.clear()
        self._lost.clear()

    def _same_audio(self, a: Hit, b: Hit | Decision) -> bool:
        return _overlap(a, b) > self.max_overlap

    def take_lost(self) -> list[Decision]:
        """Candidates that lost a competition since the last call (never emitted)."""
        lost, self._lost = self._lost, []
        return lost

    def _suppressed(self, keyword_id: int, hit: Hit, frame: int) -> bool:
        last = self._last.get(keyword_id)
        if last is None:
            return False
        if frame - last.decided_frame < self.refractory_frames:
            return True
        return self._same_audio(hit, last)

    def step(self, frame: int, above: dict[int, Hit], enrolled: Callable[[int], bool]) -> list[Decision]:
        """Advance to ``frame`` with the keywords scoring at or above their threshold there.

        ``enrolled(id)`` says whether a keyword still exists (deleted ones are dropped, never emitted).
        """
        for kid, hit in above.items():
            cand = self._open.get(kid)
            if cand is not None:
                cand.peaked = cand.peaked or hit.score < cand.last
                cand.last = hit.score
                cand.run += 1
                if hit.score > cand.peak.score:
                    cand.peak = hit
            elif not self._suppressed(kid, hit, frame):
                self._open[kid] = _Candidate(hit, frame, hit.score)
        for kid in [k for k in self._open if not enrolled(k) or (k not in above and self._unconfirmed(k))]:
            del self._open[kid]  # deleted keyword, or a run too short for ``persistence``: never emitted
        ready = [k for k, c in self._open.items() if self._ready(c, k in above, frame)]
        return self._release(ready, frame)

    def _unconfirmed(self, kid: int) -> bool:
        return self._open[kid].run < self.persistence

    def _ready(self, cand: _Candidate, still_above: bool, frame: int) -> bool:
        if cand.run < self.persistence:
            return False
        if not still_above or frame - cand.opened >= max(self.hold_frames, self.persistence - 1):
            return True
        return self.mode == "peak" and cand.peaked

    def finish(self, frame: int, enrolled: Callable[[int], bool]) -> list[Decision]:
        """End of stream: emit every open candidate that is still enrolled (and persistent enough)."""
        keep = [k for k in self._open if enrolled(k) and not self._unconfirmed(k)]
        out = self._release(keep, frame, final=True)
        self._open.clear()
        return out

    def _release(self, ready: list[int], frame: int, final: bool = False) -> list[Decision]:
        if self.competition == "all":
            return [self._emit(kid, self._open[kid], frame) for kid in ready]
        if not final:  # a ready candidate waits for overlapping ones still open (at most hold_frames)
            waiting = [c.peak for k, c in self._open.items() if k not in ready]
            ready = [k for k in ready if not any(self._same_audio(self._open[k].peak, w) for w in waiting)]
        out: list[Decision] = []
        for kid in sorted(ready, key=lambda k: (-self._open[k].peak.score, k)):
            cand = self._open[kid]
            claimed = [d for k, d in self._last.items() if k != kid] + out
            if any(self._same_audio(cand.peak, d) for d in claimed):
                self._lost.append(
                    Decision(kid, cand.peak.score, cand.peak.start_frame, cand.peak.end_frame, frame)
                )
                del self._open[kid]
            else:
                out.append(self._emit(kid, cand, frame))
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

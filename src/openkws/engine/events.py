"""What a stream reports: detections, near-misses, score traces and the score hook's frames.

Plain frozen records with no engine behind them, so the stream (:mod:`.stream`), the VAD gate
(:mod:`.vad`, which maps their times) and every caller share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detection:
    keyword_id: int
    text: str
    score: float
    threshold: float
    start_ms: float
    end_ms: float
    decided_ms: float


@dataclass(frozen=True)
class Candidate:
    keyword_id: int
    text: str
    score: float
    threshold: float


@dataclass(frozen=True)
class NearMiss:
    """The best keywords that scored within ``near_miss_margin`` below threshold in one interval
    (and, with ``competition="best"``, keywords that lost to a better one over the same audio)."""

    time_ms: float
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class TracePoint:
    """Top-1 keyword of one evaluated frame (``keyword_id`` -1 when nothing is enrolled)."""

    frame: int
    keyword_id: int
    score: float


@dataclass(frozen=True)
class FrameScores:
    """What the score hook receives for one evaluated frame: the windows ending there."""

    frame: int
    time_ms: float  # stream time of the audio that completed these windows
    starts: tuple[int, ...]  # first feature frame of each window
    embeddings: np.ndarray  # [n_windows, D], L2-normalised


ScoreHook = Callable[[FrameScores], None]


@dataclass
class DecodeResult:
    detections: list[Detection] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)
    finished: bool = False

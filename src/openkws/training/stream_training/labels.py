"""Keyword-end labels for the windows the engine scores.

The engine's feature frame ``t`` covers samples ``[t * hop, t * hop + receptive)``, so a window
ending at frame ``t`` has heard audio up to sample ``t * hop + receptive``. For a phrase ending at
sample ``e``, that window is a *positive* only when it ends 0-200 ms after ``e``; every other
window of the stream is a negative for the phrase, including windows that hold part of it or
that end long after it (the score must peak at the keyword's end).

Example (hop 1280, receptive 12512, the phrase ends at sample 40,000):
    >>> ends = window_end_samples(np.array([20, 21, 22, 23, 24]), 1280, 12512)
    >>> ends.tolist()
    [38112, 39392, 40672, 41952, 43232]
    >>> is_keyword_end(ends, 40_000).tolist()
    [False, False, True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import WindowPlan

END_TOLERANCE_S = 0.2  # positives end 0-200 ms after the phrase


def window_end_samples(t: np.ndarray, hop: int, receptive: int) -> np.ndarray:
    """The last audio sample (exclusive) heard by a window ending at feature frame ``t``."""
    return np.asarray(t, np.int64) * hop + receptive


def is_keyword_end(
    end_samples: np.ndarray, phrase_end: int, tolerance_s: float = END_TOLERANCE_S
) -> np.ndarray:
    lag = np.asarray(end_samples, np.int64) - int(phrase_end)
    return (lag >= 0) & (lag <= int(tolerance_s * SAMPLE_RATE))


def stream_windows(plan: WindowPlan, num_frames: int) -> np.ndarray:
    """Every window the engine scores over ``num_frames`` feature frames, as [N, 2] (start, end)."""
    pos = plan.positions(num_frames)
    return np.array(pos, np.int64).reshape(-1, 2)


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``phrase``'s words occur whole and in order in ``text`` ("the" not in "other")."""
    return f" {phrase} " in f" {text} "


def negatives_mask(stream_texts: Sequence[str], phrases: Sequence[str]) -> np.ndarray:
    """[S, Q] True where stream ``s`` may serve as negatives for phrase ``q``: its words never say
    ``q`` (a carrier that happens to contain the phrase is ignored for it, not a negative)."""
    return np.array([[not contains_phrase(t, q) for q in phrases] for t in stream_texts], bool).reshape(
        len(stream_texts), len(phrases)
    )

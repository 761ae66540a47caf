"""Keyword window geometry shared by training and serving: which detector window fits a spoken
keyword, and where to cut it.

A window of ``W`` feature frames covers ``receptive + (W - 1) * hop`` samples of audio. Mapping a
keyword's duration to a window: the smallest window whose audio span is at least
``duration + WINDOW_MARGIN_S`` (the keyword plus a little context on each side), else the largest.
Training cuts its keyword crops this way, and the service embeds TTS renditions of a keyword the
same way for acoustic proxies (:meth:`openkws.engine.spotter.Spotter.acoustic_proxy`), so both
look like the windows the detector scores.

Example:
    >>> windows = (8, 12, 16, 22, 30)
    >>> round(window_seconds("speech_embedding", 8), 2), round(window_seconds("speech_embedding", 30), 2)
    (1.34, 3.1)
    >>> window_for_duration("speech_embedding", 0.45, windows), window_for_duration("speech_embedding", 2.4, windows)
    (8, 30)
    >>> import numpy as np
    >>> wave = np.zeros(16_000, np.float32); wave[4000:8000] = 0.5
    >>> speech_span(wave)
    (4000, 8000)
"""

from __future__ import annotations

import math

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import FRONTENDS

WINDOW_MARGIN_S = 0.5  # keyword duration + this = minimal window span
SPEECH_THRESHOLD = 0.05  # fraction of the clip's peak frame RMS that counts as speech
SPEECH_FRAME_SAMPLES = 160  # 10 ms RMS frames for speech_span


def window_samples(frontend: str, frames: int) -> int:
    hop, receptive, _ = FRONTENDS[frontend]
    return receptive + (frames - 1) * hop


def window_seconds(frontend: str, frames: int) -> float:
    return window_samples(frontend, frames) / SAMPLE_RATE


def window_for_duration(frontend: str, duration_s: float, windows: tuple[int, ...]) -> int:
    """Smallest window spanning ``duration_s + WINDOW_MARGIN_S``; the largest if none does."""
    need = duration_s + WINDOW_MARGIN_S
    for w in sorted(windows):
        if window_seconds(frontend, w) >= need:
            return w
    return max(windows)


def keyword_window(span: tuple[int, int], frontend: str, windows: tuple[int, ...]) -> int:
    """The window (feature frames) for a keyword spoken over samples ``span`` = (start, end)."""
    return window_for_duration(frontend, (span[1] - span[0]) / SAMPLE_RATE, windows)


def speech_span(wave: np.ndarray, frame: int = SPEECH_FRAME_SAMPLES) -> tuple[int, int]:
    """(start, end) samples of the region whose frame RMS exceeds ``SPEECH_THRESHOLD`` x peak."""
    n = len(wave) // frame
    if n == 0:
        return 0, len(wave)
    rms = np.sqrt((wave[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    on = np.flatnonzero(rms >= SPEECH_THRESHOLD * rms.max())
    if len(on) == 0:
        return 0, len(wave)
    return int(on[0] * frame), int(min(len(wave), (on[-1] + 1) * frame))


def crop_window(
    num_frames: int, span: tuple[int, int], window: int, frontend: str, rng: np.random.Generator | None
) -> int:
    """Start frame of a ``window``-frame crop that holds the keyword span (random among valid starts;
    centred when ``rng`` is None or the keyword is longer than the window)."""
    hop = FRONTENDS[frontend][0]
    span_w = window_samples(frontend, window)
    s, e = span
    lo = math.ceil((e - span_w) / hop)
    hi = math.floor(s / hop)
    hi_limit = max(0, num_frames - window)
    if lo > hi or rng is None:
        centre = (s + e) / 2 - span_w / 2
        start = round(centre / hop)
    else:
        start = int(rng.integers(lo, hi + 1))
    return int(min(max(start, 0), hi_limit))

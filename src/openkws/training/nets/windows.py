"""Detector windows: which feature-frame window lengths the service evaluates, and how training
chooses one for a keyword clip so that train-time windows look like serve-time windows.

A window of ``W`` feature frames covers ``receptive + (W - 1) * hop`` samples of audio. The
acoustic encoder consumes ``context`` frames, so a window pools ``W - context`` frame outputs.

Mapping keyword duration -> window (used by training, the pair evaluation and the service's
acoustic proxies; defined in :mod:`openkws.engine.windows`): the smallest window whose audio span
is at least ``duration + WINDOW_MARGIN_S`` (the keyword plus a little context on each side), else
the largest window. At serve time the detector slides every
window length over the stream and keeps the best-scoring one, so a keyword is always scored by a
window at least this well fitted.

Example:
    >>> from openkws.engine.windows import window_for_duration, window_seconds
    >>> w = default_windows("speech_embedding")
    >>> w
    (8, 12, 16, 22, 30)
    >>> round(window_seconds("speech_embedding", w[0]), 2), round(window_seconds("speech_embedding", w[-1]), 2)
    (1.34, 3.1)
    >>> window_for_duration("speech_embedding", 0.45, w), window_for_duration("speech_embedding", 2.4, w)
    (8, 30)
"""

from __future__ import annotations

from openkws.engine.model_spec import WindowPlan

# Window lengths in feature frames: one short syllable (~1.3 s span incl. the embedding's own 0.78 s
# receptive field) up to four-word phrases (~3.1 s span).
_DEFAULT_WINDOWS: dict[str, tuple[int, ...]] = {
    "speech_embedding": (8, 12, 16, 22, 30),  # 80 ms frames: 1.34 / 1.66 / 1.98 / 2.46 / 3.10 s
    "logmel": (90, 130, 170, 230, 310),  # 10 ms frames: 0.92 / 1.32 / 1.72 / 2.32 / 3.12 s
}
_DEFAULT_STRIDE: dict[str, int] = {"speech_embedding": 1, "logmel": 8}  # both 80 ms


def default_windows(frontend: str) -> tuple[int, ...]:
    return _DEFAULT_WINDOWS[frontend]


def default_stride(frontend: str) -> int:
    return _DEFAULT_STRIDE[frontend]


def window_positions(num_frames: int, windows: tuple[int, ...], stride: int) -> list[tuple[int, int]]:
    """Every (start, length) window the detector scores on a clip of ``num_frames`` features: the
    serving window plan (:class:`openkws.engine.model_spec.WindowPlan`), so validation scores the
    windows the service scores. A clip shorter than every window is scored whole, once.

    >>> window_positions(10, (4, 8, 16), 3)
    [(0, 6), (0, 9), (1, 8), (2, 4), (5, 4)]
    """
    spans = WindowPlan(tuple(sorted(set(windows))), stride, 0).positions(num_frames)
    if not spans:
        return [(0, num_frames)] if num_frames > 0 else []
    return [(s, e - s + 1) for s, e in spans]

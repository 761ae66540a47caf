"""Where in a detected window the keyword was spoken: ``start_ms``/``end_ms`` of a detection.

The detector's best window holds the keyword with context around it: a window spans the keyword's
duration plus about half a second (:mod:`.windows`), and its length is quantised to a few sizes, so
the window's own span is a poor estimate of the keyword's (it started up to a second early). A
stream therefore keeps the energy of its recent audio in 10 ms frames (:class:`EnergyTrack`, a few
kilobytes) and a detection reports the part of its window that holds speech: the frames within
:data:`SPEECH_RANGE_DB` of the window's loudest frame and at least :data:`ABOVE_FLOOR_DB` above its
quietest decile (the noise floor). A window with no clear speech keeps its full span.

Example (a tone from 0.5 s to 1.0 s inside a 2 s window of silence):
    >>> t = EnergyTrack(history_samples=48_000)
    >>> x = np.zeros(32_000, np.float32); x[8000:16000] = 0.3 * np.sin(np.arange(8000) / 3)
    >>> t.push(x)
    >>> t.speech_span(0, 32_000)
    (8000, 16000)
    >>> t.end
    32000
"""

from __future__ import annotations

import numpy as np

FRAME = 160  # 10 ms at 16 kHz
SPEECH_RANGE_DB = 30.0  # speech frames: within this of the window's loudest frame ...
ABOVE_FLOOR_DB = 8.0  # ... and this far above its noise floor (the quietest decile)
MIN_CONTRAST_DB = 10.0  # a window whose loudest frame is not this far above its floor keeps its span
SILENCE_DB = -120.0  # energy of digital silence (log of zero)


class EnergyTrack:
    """Log energy (dB) of a stream's recent audio in 10 ms frames, indexed by stream sample."""

    def __init__(self, history_samples: int) -> None:
        self.keep = max(1, history_samples // FRAME + 1)
        self._db = np.zeros(0, np.float32)
        self._first = 0  # frame index of _db[0]
        self._tail = np.zeros(0, np.float32)  # < one frame, not yet measured

    def push(self, samples: np.ndarray) -> None:
        x = np.concatenate([self._tail, np.asarray(samples, np.float32).reshape(-1)])
        n = len(x) // FRAME
        self._tail = x[n * FRAME :]
        if n == 0:
            return
        power = (x[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2).mean(axis=1)
        db = np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB).astype(np.float32)
        self._db = np.concatenate([self._db, db])
        drop = len(self._db) - self.keep
        if drop > 0:
            self._db = self._db[drop:]
            self._first += drop

    @property
    def end(self) -> int:
        """Samples pushed so far: the index one past the last sample the track has seen."""
        return (self._first + len(self._db)) * FRAME + len(self._tail)

    def speech_span(self, start: int, end: int) -> tuple[int, int]:
        """The speech inside samples ``[start, end)`` as (first, end) samples; the span itself when it
        holds no clear speech or its audio is no longer (or not yet) measured."""
        a = max(start // FRAME, self._first)
        b = min(-(-end // FRAME), self._first + len(self._db))
        if b - a < 2:
            return start, end
        db = self._db[a - self._first : b - self._first]
        peak, floor = float(db.max()), float(np.percentile(db, 10))
        if peak - floor < MIN_CONTRAST_DB:
            return start, end
        on = np.flatnonzero(db >= max(peak - SPEECH_RANGE_DB, floor + ABOVE_FLOOR_DB))
        return max(start, (a + int(on[0])) * FRAME), min(end, (a + int(on[-1]) + 1) * FRAME)

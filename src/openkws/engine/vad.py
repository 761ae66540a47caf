"""Voice-activity gating of one stream: the engine only sees speech, with its context.

Real audio is mostly not speech, yet the front-end (mel + speech embedding) and the acoustic head
cost the same on silence. :class:`VadGate` sits between the audio input and a
:class:`~openkws.engine.stream.KeywordStream`: WebRTC's VAD (``webrtcvad``, a GMM over 30 ms
frames; microseconds per frame) classifies the audio, and only *segments* reach the engine:

* while no speech was heard for ``hangover_ms``, audio is held in a ring of the last
  ``preroll_ms`` and older audio is dropped (nothing is computed for it);
* at speech onset the ring is released first, so the engine recomputes the feature context of the
  onset (receptive field + acoustic context + the start of the shortest window) from real audio:
  a keyword right at speech onset is scored exactly as without the gate;
* after the last speech frame the gate stays open ``hangover_ms``, long enough for the windows
  that end after the keyword and for the decision hold, so no candidate waits for the next segment.

The engine then runs on the concatenated segments, on its own clock; :meth:`VadGate.stream_ms`
maps its times back to the stream's, and :meth:`VadGate.map_result` rewrites a ``DecodeResult``.

Example (two seconds of silence: nothing reaches the engine, nothing is computed):
    >>> import numpy as np
    >>> g = VadGate()
    >>> len(g.push(np.zeros(32_000, np.float32))), g.stats()["fed_fraction"]
    (0, 0.0)
    >>> g.stream_ms(0.0)
    0.0
    >>> VadConfig(aggressiveness=4)
    Traceback (most recent call last):
    ...
    ValueError: aggressiveness must be 0..3, got 4
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import webrtcvad

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult

FRAME_SAMPLES = 480  # 30 ms: the longest frame webrtcvad accepts (fewest calls)


@dataclass(frozen=True)
class VadConfig:
    # webrtcvad mode 0 (keeps most audio) .. 3 (drops most). Mode 2 took -60 dBFS white noise after
    # speech for speech (its noise model adapts); mode 3 did not, and kept every keyword (BENCHMARKS.md).
    aggressiveness: int = 3
    # Pre-roll: receptive field (0.78 s) + acoustic context (5 x 80 ms) + slack for a soft onset.
    preroll_ms: int = 1200
    # Hangover: the best window of a keyword ends ~0.25 s after it, then the 240 ms decision hold.
    hangover_ms: int = 800

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.preroll_ms < 0 or self.hangover_ms < 0:
            raise ValueError(
                f"preroll_ms and hangover_ms must be >= 0, got {self.preroll_ms}, {self.hangover_ms}"
            )


class VadGate:
    """Per-stream gate (not thread-shared). ``push`` returns the audio the engine should get now."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._preroll = self.config.preroll_ms * SAMPLE_RATE // 1000
        self._hangover = self.config.hangover_ms * SAMPLE_RATE // 1000
        self._tail = np.zeros(0, np.float32)  # < one VAD frame, not yet classified
        self._ring: deque[np.ndarray] = deque()  # held (closed gate), newest last
        self._ring_samples = 0
        self._silence = self._hangover  # samples since the last speech frame (starts closed)
        self._received = 0  # stream samples classified so far
        self._fed = 0  # samples handed to the engine
        self._speech_frames = 0
        self._frames = 0
        # (engine sample, stream sample) at the start of each contiguous segment fed to the engine
        self._seg_engine: list[int] = []
        self._seg_stream: list[int] = []

    @property
    def is_open(self) -> bool:
        return self._silence < self._hangover

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Classify 16 kHz float32 audio; returns what to pass to ``accept_waveform`` (maybe empty)."""
        x = np.concatenate([self._tail, np.asarray(samples, np.float32).reshape(-1)])
        n = len(x) // FRAME_SAMPLES
        self._tail = x[n * FRAME_SAMPLES :]
        if n == 0:
            return np.zeros(0, np.float32)
        pcm = (np.clip(x[: n * FRAME_SAMPLES], -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        out: list[np.ndarray] = []
        step = 2 * FRAME_SAMPLES
        for k in range(n):
            frame = x[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]
            speech = self._vad.is_speech(pcm[k * step : (k + 1) * step], SAMPLE_RATE)
            self._frames += 1
            if speech:
                self._speech_frames += 1
                self._silence = 0
            else:
                self._silence += FRAME_SAMPLES
            start = self._received
            self._received += FRAME_SAMPLES
            if self.is_open:
                if self._ring:  # onset: release the pre-roll first
                    self._emit(list(self._ring), self._received - FRAME_SAMPLES - self._ring_samples, out)
                    self._ring.clear()
                    self._ring_samples = 0
                self._emit([frame], start, out)
            else:
                self._ring.append(frame)
                self._ring_samples += FRAME_SAMPLES
                while self._ring and self._ring_samples - len(self._ring[0]) >= self._preroll:
                    self._ring_samples -= len(self._ring.popleft())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """End of stream: the unclassified tail goes to the engine if the gate is open."""
        tail, self._tail = self._tail, np.zeros(0, np.float32)
        if not len(tail) or not self.is_open:
            return np.zeros(0, np.float32)
        out: list[np.ndarray] = []
        self._emit([tail], self._received, out)
        self._received += len(tail)
        return out[0]

    def _emit(self, chunks: list[np.ndarray], stream_start: int, out: list[np.ndarray]) -> None:
        if not self._seg_engine or stream_start - self._seg_stream[-1] != self._fed - self._seg_engine[-1]:
            self._seg_engine.append(self._fed)  # audio was dropped before this chunk: new segment
            self._seg_stream.append(stream_start)
        for c in chunks:
            out.append(c)
            self._fed += len(c)

    def stream_ms(self, engine_ms: float, end: bool = False) -> float:
        """Engine time -> stream time. ``end``: an exclusive end on a segment boundary stays in the
        segment before it."""
        if not self._seg_engine:
            return engine_ms
        e = engine_ms * SAMPLE_RATE / 1000.0
        find = bisect.bisect_left if end else bisect.bisect_right
        i = max(0, find(self._seg_engine, e) - 1)
        return 1000.0 * (self._seg_stream[i] + e - self._seg_engine[i]) / SAMPLE_RATE

    def _start_ms(self, start_ms: float, end_ms: float) -> float:
        """A window reaching back over a cut holds audio of two segments; the keyword is in the
        segment of the window's end, so the reported start is not earlier than that segment."""
        i = max(0, bisect.bisect_left(self._seg_engine, end_ms * SAMPLE_RATE / 1000.0) - 1)
        first = 1000.0 * self._seg_stream[i] / SAMPLE_RATE if self._seg_stream else 0.0
        return max(self.stream_ms(start_ms), first)

    def map_result(self, res: DecodeResult) -> DecodeResult:
        """Rewrite the engine times of a decode result to stream times (in place; returned)."""
        res.detections = [
            replace(
                d,
                start_ms=round(self._start_ms(d.start_ms, d.end_ms), 3),
                end_ms=round(self.stream_ms(d.end_ms, end=True), 3),
                decided_ms=round(self.stream_ms(d.decided_ms, end=True), 3),
            )
            for d in res.detections
        ]
        res.near_misses = [
            replace(m, time_ms=round(self.stream_ms(m.time_ms, end=True), 3)) for m in res.near_misses
        ]
        return res

    def stats(self) -> dict[str, Any]:
        """Speech frames seen and the fraction of the stream's audio the engine received."""
        return {
            "frames": self._frames,
            "speech_frames": self._speech_frames,
            "segments": len(self._seg_engine),
            "fed_fraction": round(self._fed / self._received, 4) if self._received else 0.0,
        }

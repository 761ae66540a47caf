"""Audio sessions at the service edge and the batch function the micro-batcher runs.

An :class:`AudioSession` wraps one engine stream with its input converter. The event loop only
appends raw input (bytes or arrays) to it; decoding, resampling and inference all happen in
:func:`run_batch`, on a worker thread, for many sessions at once. Websocket streams and offline
``POST /v1/detect`` both go through this one path.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .audio import AudioConverter, AudioFormat, pcm_to_float
from .constants import SAMPLE_RATE
from .engine.spotter import DecodeResult, KeywordStream, Spotter
from .engine.vad import VadGate
from .metrics import Metrics


class AudioSession:
    """One stream: declared input format -> converter -> engine stream. One job in flight at a time."""

    def __init__(self, stream: KeywordStream, sample_rate: int, channels: int, fmt: AudioFormat | None = None,
                 source: str = "stream", gate: VadGate | None = None) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.stream = stream
        self.fmt = fmt
        self.source = source
        self.converter = AudioConverter(sample_rate, channels)
        self.sample_rate = sample_rate
        self._raw: list[bytes | np.ndarray] = []
        self._raw_samples = 0  # per channel, at the input rate
        self._raw_bytes = 0  # memory held by queued input (bounded by max_pending_bytes)
        self._lock = threading.Lock()
        self._finish = False
        self._flushed = False
        self.frames = 0
        self.samples_in = 0  # per channel, at the input rate (everything accepted)
        self.gate = gate  # voice-activity gate: the engine gets speech segments only (engine/vad.py)

    # -- event loop side: cheap appends only ---------------------------------------------------
    def push_bytes(self, data: bytes) -> None:
        assert self.fmt is not None
        n = len(data) // self.fmt.bytes_per_frame
        with self._lock:
            self._raw.append(data)
            self._raw_samples += n
            self._raw_bytes += len(data)
        self.samples_in += n
        self.frames += 1

    def push_samples(self, x: np.ndarray) -> None:
        """float32 [n, channels] at the session's input rate."""
        with self._lock:
            self._raw.append(x)
            self._raw_samples += len(x)
            self._raw_bytes += x.nbytes
        self.samples_in += len(x)

    def finish(self) -> None:
        with self._lock:
            self._finish = True

    @property
    def pending_seconds(self) -> float:
        """Audio accepted but not yet processed (input side plus engine queue)."""
        return self._raw_samples / self.sample_rate + self.stream.pending_samples / SAMPLE_RATE

    @property
    def pending_bytes(self) -> int:
        """Memory held by input not yet decoded."""
        return self._raw_bytes

    @property
    def received_ms(self) -> float:
        return 1000.0 * self.samples_in / self.sample_rate

    def has_work(self) -> bool:
        return bool(self._raw) or (self._finish and not self._flushed) or self.stream.ready()

    # -- worker thread side ------------------------------------------------------------------------
    def prepare(self) -> float:
        """Decode and resample queued input into the engine stream; returns 16 kHz seconds added."""
        with self._lock:
            raw, self._raw, self._raw_samples, self._raw_bytes = self._raw, [], 0, 0
            finish = self._finish and not self._flushed
        added = 0
        for item in raw:
            x = pcm_to_float(item, self.fmt) if isinstance(item, bytes) else item  # type: ignore[arg-type]
            y = self.converter.push(x)
            added += len(y)
            self.stream.accept_waveform(y if self.gate is None else self.gate.push(y))
        if finish:
            tail = self.converter.flush()
            added += len(tail)
            if self.gate is not None:
                tail = np.concatenate([self.gate.push(tail), self.gate.flush()])
            self.stream.accept_waveform(tail)
            self.stream.input_finished()
            self._flushed = True
        return added / SAMPLE_RATE


@dataclass(frozen=True)
class BatchRunner:
    """The batch function: prepare every session, then one batched engine step."""

    spotter: Spotter
    metrics: Metrics | None = None

    def __call__(self, sessions: Sequence[AudioSession]) -> list[DecodeResult]:
        for s in sessions:
            seconds = s.prepare()
            if self.metrics is not None and seconds:
                self.metrics.audio_seconds.labels(s.source).inc(seconds)
        results = self.spotter.decode_streams([s.stream for s in sessions])
        return [r if s.gate is None else s.gate.map_result(r) for s, r in zip(sessions, results, strict=True)]


def merge(into: DecodeResult, more: DecodeResult) -> DecodeResult:
    into.detections += more.detections
    into.near_misses += more.near_misses
    into.finished = into.finished or more.finished
    return into

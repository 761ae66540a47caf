"""A stream's audio input: one queue of the chunks a client sent, at the client's rate, and their
conversion to 16 kHz mono on the worker thread (downmix, streaming resample with soxr).

``accept`` only appends (cheap, safe from the event loop); ``take`` converts queued audio in order.
Chunking does not change the 16 kHz output beyond float rounding; ``take`` returns the resampler's
tail once, when input is finished and the queue is empty. :class:`GatedFeed` hands the engine that
audio past the stream's VAD gate in capped steps, holding what the gate releases beyond a step.

Example:
    >>> q = StreamInput()
    >>> q.accept(8000, np.ones(800, np.float32)); q.accept(8000, np.ones(800, np.float32))
    >>> round(q.pending_seconds, 3), q.pending_bytes
    (0.2, 6400)
    >>> q.finish(); audio, last = q.take(16_000)
    >>> len(audio), last, q.pending_bytes
    (3200, True, 0)
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import soxr

from openkws.constants import SAMPLE_RATE
from openkws.engine.vad import VadGate


class StreamStateError(RuntimeError):
    """A stream was used wrongly (audio after finish, a second sample rate, or two decodes at once)."""


class StreamInput:
    """One input queue per stream. The one lock of a stream guards it (and the decode claim)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()  # float32 [n] or [n, channels] at ``rate``
        self._queued = 0  # samples per channel in the queue
        self._bytes = 0
        self.rate: int | None = None
        self._resampler: soxr.ResampleStream | None = None
        self.finished = False  # no more input (``finish`` called)
        self._flushed = False  # the resampler tail was returned
        self.samples_in = 0  # per channel, at the input rate (everything accepted)

    def accept(self, sample_rate: int, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float32)
        if x.ndim not in (1, 2):
            raise ValueError(f"samples must be [n] or [n, channels]; got shape {x.shape}")
        with self.lock:
            if self.finished:
                raise StreamStateError("audio after input_finished(); call reset() to start a new stream")
            if self.rate is None:
                self.rate = int(sample_rate)
                if self.rate != SAMPLE_RATE:
                    self._resampler = soxr.ResampleStream(
                        self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
                    )
            elif sample_rate != self.rate:
                raise StreamStateError(
                    f"sample rate changed from {self.rate} to {sample_rate} Hz within one stream"
                )
            if len(x):
                self._chunks.append(x)
                self._queued += len(x)
                self._bytes += x.nbytes
                self.samples_in += len(x)

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    @property
    def pending_seconds(self) -> float:
        return self._queued / self.rate if self.rate else 0.0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def has_input(self) -> bool:
        return self._queued > 0 or (self.finished and not self._flushed)

    def take(self, max_samples: int) -> tuple[np.ndarray, bool]:
        """Up to about ``max_samples`` of queued audio at 16 kHz mono, and whether input is exhausted."""
        with self.lock:
            if self._flushed:  # everything was returned, resampler tail included
                return np.zeros(0, np.float32), False
            rate = self.rate or SAMPLE_RATE
            budget = max(1, max_samples * rate // SAMPLE_RATE)
            chunks: list[np.ndarray] = []
            taken = 0
            while self._chunks and taken < budget:
                c = self._chunks[0]
                need = budget - taken
                if len(c) <= need:
                    chunks.append(self._chunks.popleft())
                else:
                    chunks.append(c[:need])
                    self._chunks[0] = c[need:]
                taken += len(chunks[-1])
                self._bytes -= chunks[-1].nbytes
            self._queued -= taken
            last = self.finished and self._queued == 0 and not self._flushed
            self._flushed = last
        mono = [c if c.ndim == 1 else c.mean(axis=1, dtype=np.float32) for c in chunks]
        x = np.ascontiguousarray(np.concatenate(mono) if mono else np.zeros(0, np.float32), np.float32)
        if self._resampler is not None:
            x = np.asarray(self._resampler.resample_chunk(x, last=last), np.float32)
        return x, last


class GatedFeed:
    """A stream's input past its VAD gate (if any), in capped steps: what the gate releases beyond a
    step's cap (an onset's pre-roll burst) or a backlog is held, in order, for the next steps."""

    def __init__(self, source: StreamInput, gate: VadGate | None) -> None:
        self.source, self.gate = source, gate
        self.held = np.zeros(0, np.float32)  # 16 kHz, past the gate, not yet given to the engine
        self.done = False  # the input's last audio (and the gate's tail) is in ``held``

    def take(self, cap: int) -> tuple[np.ndarray, bool]:
        """Up to ``cap`` 16 kHz samples for the engine, and whether they end the stream."""
        held = self.held
        if len(held) < cap and not self.done:
            audio, last = self.source.take(cap - len(held))
            if self.gate is not None:  # engine clock = gated audio; the stream maps times back
                audio = self.gate.push(audio)
                if last:
                    audio = np.concatenate([audio, self.gate.flush()])
            held = np.concatenate([held, audio]) if len(held) else audio
            self.done = last
        out, self.held = held[:cap], held[cap:]
        return out, self.done and not len(self.held)

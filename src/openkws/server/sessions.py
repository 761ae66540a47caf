"""Service-side sessions over engine streams, and the batch function the micro-batcher runs.

An :class:`AudioSession` is one websocket stream or one ``POST /v1/detect`` upload: its declared
format, an id, counters, and the engine stream that owns the audio. The event loop only turns PCM
frames into float arrays and appends them to the stream (``KeywordStream.accept_waveform``, one
queue); downmix, resampling and inference all run in :class:`BatchRunner`, on a worker thread, for
many sessions at once (:meth:`openkws.engine.spotter.Spotter.decode_streams`).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openkws.audio import AudioError, AudioFormat, pcm_to_float
from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult
from openkws.engine.spotter import Spotter
from openkws.engine.stream import KeywordStream
from openkws.server.batcher import EngineLoad
from openkws.server.metrics import Metrics


class AudioSession:
    """One stream: declared input format -> engine stream. One batch job in flight at a time."""

    def __init__(
        self,
        stream: KeywordStream,
        sample_rate: int,
        channels: int,
        fmt: AudioFormat | None = None,
        source: str = "stream",
    ) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.stream = stream
        self.fmt = fmt
        self.source = source
        self.sample_rate = sample_rate
        self.channels = channels
        self.error: AudioError | None = None  # a bad frame fails the session's next batch job
        self.frames = 0
        # (input seconds received once the chunk was queued, when it arrived (monotonic)) of the
        # chunks the engine has not taken yet: the oldest one's wait is the engine's lag on this
        # stream, whatever the client's frame size and however many capped steps a backlog takes.
        self._arrivals: deque[tuple[float, float]] = deque()

    # -- event loop side: cheap conversions and appends only ----------------------------------------
    def push_bytes(self, data: bytes) -> None:
        """One binary frame of the declared PCM format."""
        if self.fmt is None:
            raise ValueError("push_bytes needs the session's declared AudioFormat")
        self.frames += 1
        try:
            x = pcm_to_float(data, self.fmt)
        except AudioError as e:
            self.error = self.error or e
            return
        self.push_samples(x)

    def push_samples(self, x: np.ndarray, now: float | None = None) -> None:
        """float32 [n, channels] (or [n]) at the session's input rate, arrived at ``now`` (monotonic)."""
        self.stream.accept_waveform(self.sample_rate, x)
        self._arrivals.append((self.stream.received_seconds, time.monotonic() if now is None else now))

    @property
    def queued_at(self) -> float | None:
        """When the oldest input the engine has not taken arrived (None: none is queued). Audio the
        VAD gate released but a capped step held back is not queued input: the pre-roll is old by
        design; the input that waits behind it is counted."""
        consumed = self.stream.consumed_seconds
        while self._arrivals and self._arrivals[0][0] <= consumed + 1e-9:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else None

    def finish(self) -> None:
        self.stream.input_finished()

    @property
    def pending_seconds(self) -> float:
        """Audio accepted but not yet processed."""
        return self.stream.pending_seconds

    @property
    def pending_bytes(self) -> int:
        """Memory held by input not yet decoded (float32 samples)."""
        return self.stream.pending_bytes

    @property
    def received_ms(self) -> float:
        return 1000.0 * self.stream.received_seconds

    def has_work(self) -> bool:
        return self.error is not None or self.stream.ready()

    def catching_up(self, step_samples: int) -> bool:
        """Whether the next job is catch-up work: an upload (not real time), or a stream whose VAD
        gate released more than one live step (an onset's pre-roll). A stream whose *input* fell
        behind stays live: queued behind the live jobs it would fall further behind, and under
        load every stream does (150 offered streams: 107 admitted, against 140 when only bursts
        are deferred; docs/BENCHMARKS.md)."""
        return self.source != "stream" or self.stream.held_samples > step_samples


@dataclass(frozen=True)
class BatchRunner:
    """The batch function: one batched engine step over every session's stream. In a batch with a
    websocket stream, each session takes at most ``step_samples`` of audio past its VAD gate (the
    rest waits for later steps), so no stream's burst slows the others' step; a batch of uploads
    only takes the engine's ``max_step_seconds`` (small steps of one stream cost about 3x the CPU).
    With ``load``, each step records its wall time, the stream-seconds it consumed and its oldest
    audio's lag."""

    spotter: Spotter
    metrics: Metrics | None = None
    load: EngineLoad | None = None
    step_samples: int | None = None

    def __call__(self, sessions: Sequence[AudioSession]) -> list[DecodeResult]:
        for s in sessions:
            if s.error is not None:  # raised here so the batcher retries the others without it
                raise s.error
        t0 = time.monotonic()
        # A live stream's lag is how long its oldest queued audio has waited; an upload's queued
        # chunk is not real time and does not count.
        live = [t0 - s.queued_at for s in sessions if s.source == "stream" and s.queued_at is not None]
        before = [s.stream.consumed_seconds for s in sessions]
        live_batch = any(s.source == "stream" for s in sessions)
        step = self.step_samples if live_batch else None
        results = self.spotter.decode_streams([s.stream for s in sessions], step)
        wall = time.monotonic() - t0
        # one figure per stream and step, from the stream's one count: admission's cost and the
        # audio-seconds metric cannot disagree
        audio = [s.stream.consumed_seconds - b for s, b in zip(sessions, before, strict=True)]
        if self.load is not None:
            self.load.record(wall, sum(audio), max(live) + wall if live else 0.0)
        if self.metrics is not None:  # one increment per source and step, not per stream
            by_source: dict[str, float] = {}
            for s, a in zip(sessions, audio, strict=True):
                by_source[s.source] = by_source.get(s.source, 0.0) + a
            for source, seconds in by_source.items():
                if seconds > 0:
                    self.metrics.audio_seconds.labels(source).inc(seconds)
        return results


WARM_UP_STREAMS = 8
WARM_UP_SECONDS = 0.5


def warm_up(spotter: Spotter, load: EngineLoad | None = None) -> None:
    """Decode a few streams of quiet noise together (blocking): the first ONNX runs allocate, and
    ``load`` gets a first cost measurement before any client arrives. A batch this small costs more
    per stream than a full one, so admission starts on the cautious side."""
    rng = np.random.default_rng(0)
    for attempt in range(2):  # the first batch is cold; the second one is measured
        streams = [spotter.create_stream() for _ in range(WARM_UP_STREAMS)]
        sessions = [AudioSession(s, SAMPLE_RATE, 1, source="warm-up") for s in streams]
        for s in sessions:
            s.push_samples(
                (0.003 * rng.standard_normal(int(WARM_UP_SECONDS * SAMPLE_RATE))).astype(np.float32)
            )
        t0 = time.perf_counter()
        BatchRunner(spotter)(sessions)
        if attempt and load is not None:
            load.seed(time.perf_counter() - t0, WARM_UP_STREAMS * WARM_UP_SECONDS)


def merge(into: DecodeResult, more: DecodeResult) -> DecodeResult:
    into.detections += more.detections
    into.near_misses += more.near_misses
    into.finished = into.finished or more.finished
    return into

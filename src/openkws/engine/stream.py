"""The state of one audio stream (:class:`KeywordStream`): its input, front-end tails, acoustic frame
history and decisions. Created by :meth:`openkws.engine.spotter.Spotter.create_stream`.

The stream owns everything about itself, in sherpa-onnx's shape: ``accept_waveform(sample_rate,
samples)`` queues audio at any rate (the stream resamples it, :mod:`.stream_input`); the engine's
batched step (:meth:`Spotter.decode_streams`, or :meth:`Spotter.decode` for one stream) calls the
stream's step methods in order (``begin``, ``accept_features``, ``accept_frames``, ``decide``,
``end``), hands it the window scores, and the stream decides. The engine never writes a stream's
fields, and the stream holds no reference to the engine: it is data plus decisions.

Public score-trace hook: ``create_stream(score_hook=f)`` calls ``f(FrameScores)`` for every evaluated
frame, with the L2-normalised embeddings of the windows ending there (evaluation and benchmarks
score them against any proxies they like, without subclassing anything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.decision import Competition, Decider, Decision, DecisionMode, Hit
from openkws.engine.encoders import FrontEndStep
from openkws.engine.events import (
    Candidate,
    DecodeResult,
    Detection,
    FrameScores,
    NearMiss,
    ScoreHook,
    TracePoint,
)
from openkws.engine.index import TenantIndex
from openkws.engine.model_spec import WindowPlan
from openkws.engine.scoring import KeywordView, WindowScores
from openkws.engine.span import EnergyTrack
from openkws.engine.stream_input import GatedFeed, StreamInput, StreamStateError
from openkws.engine.vad import VadConfig, VadGate


@dataclass(frozen=True)
class StreamParams:
    """Geometry and decision settings every stream of one engine shares (frames, not ms)."""

    hop: int
    receptive: int
    feature_dim: int
    frame_dim: int
    plan: WindowPlan
    hold_frames: int
    refractory_frames: int
    near_miss_frames: int
    max_overlap: float
    near_miss_margin: float
    near_miss_top: int
    max_step_samples: int
    preroll: int = 0  # virtual silence (16 kHz samples) ahead of each stream's first sample
    decision: DecisionMode = "hold"
    persistence: int = 1

    @property
    def history_frames(self) -> int:
        """Acoustic frames a stream keeps for windows that end in later steps."""
        return max(0, max(self.plan.windows) - self.plan.context - 1)

    def ms(self, frame: int, limit_samples: int) -> float:
        """Stream time (ms) of the audio that completes feature frame ``frame`` (0 within the pre-roll)."""
        return (
            1000.0
            * max(0, min(frame * self.hop + self.receptive - self.preroll, limit_samples))
            / SAMPLE_RATE
        )


@dataclass(frozen=True)
class Window:
    """One window to pool: it ends at feature frame ``frame`` and starts at ``start``."""

    frame: int
    start: int
    group: int  # nominal window length W (the acoustic_pool batch it joins)
    count: int  # valid acoustic frames
    first: int  # index of its first acoustic frame in the stream's local frame array


class KeywordStream:
    """State of one audio stream; cheap. ``accept_waveform`` may be called from any thread (it only
    appends); decoding (``Spotter.decode``) refuses to run twice at once for the same stream."""

    def __init__(
        self,
        params: StreamParams,
        tenant: str,
        keyword_subset: Iterable[int] | None,
        debug: bool,
        trace: bool,
        competition: Competition = "best",
        score_hook: ScoreHook | None = None,
        vad: VadConfig | None = None,
    ) -> None:
        self.vad = vad  # voice-activity gating: the engine sees speech segments only (engine/vad.py)
        self.params = params
        self.tenant = tenant
        self.keyword_subset: frozenset[int] | None = (
            None if keyword_subset is None else frozenset(keyword_subset)
        )
        self.debug = debug
        self.competition: Competition = competition
        self.score_hook = score_hook
        self._trace_on = trace
        self._decoding = False
        self._reset_state()

    def _reset_state(self) -> None:
        p = self.params
        self.input = StreamInput()
        self.gate = VadGate(self.vad) if self.vad is not None else None
        self.feed = GatedFeed(self.input, self.gate)  # capped steps hold the rest of a burst
        self.trace: list[TracePoint] | None = [] if self._trace_on else None
        # 16 kHz samples no mel frame has consumed yet; a new stream starts with the pre-roll, so a
        # keyword in its first milliseconds has the silent context every keyword in a stream has
        self._audio_tail = np.zeros(p.preroll, np.float32)
        self._mel_tail = np.zeros((0, 32), np.float32)
        # energy of the audio any pending decision's window may cover: detections report its speech
        self._energy = EnergyTrack(
            p.max_step_samples + (max(p.plan.windows) + p.hold_frames) * p.hop + p.receptive
        )
        self._ctx = np.zeros((0, p.feature_dim), np.float32)  # last `context` feature frames
        self._hist = np.zeros((0, p.frame_dim), np.float32)  # recent acoustic frames
        self._first_new = 0  # feature index of the first feature of the current step
        self._last_step = False
        self.num_features = 0
        self.finished = False
        self._decider = Decider(
            p.hold_frames, p.refractory_frames, p.max_overlap, self.competition, p.decision, p.persistence
        )
        self._nm_best: dict[int, Candidate] = {}
        self._nm_start = 0
        self._subset_cache: tuple[TenantIndex, KeywordView] | None = None

    # -- input -------------------------------------------------------------------------------------
    def accept_waveform(self, sample_rate: int | np.ndarray, samples: np.ndarray | None = None) -> None:
        """Queue audio: ``accept_waveform(sample_rate, samples)`` with float32 samples in [-1, 1],
        [n] or [n, channels] (downmixed), at any rate (resampled to 16 kHz in ``decode``).
        ``accept_waveform(samples)`` is 16 kHz mono."""
        if samples is None:
            rate, x = SAMPLE_RATE, np.asarray(sample_rate, np.float32).reshape(-1)
        elif isinstance(sample_rate, np.ndarray):
            raise TypeError("accept_waveform(sample_rate, samples): sample_rate must be an int")
        else:
            rate, x = int(sample_rate), np.asarray(samples, np.float32)
        self.input.accept(rate, x)

    def input_finished(self) -> None:
        """No more audio: the next decode flushes the tail and emits pending candidates."""
        self.input.finish()

    @property
    def pending_seconds(self) -> float:
        return self.input.pending_seconds

    @property
    def pending_samples(self) -> int:
        """Queued audio in 16 kHz samples."""
        return round(self.input.pending_seconds * SAMPLE_RATE)

    @property
    def received_seconds(self) -> float:
        """Audio accepted so far (queued or decoded), in seconds of the input: the one count of a
        stream's audio that the server's sessions and the library read."""
        return self.input.samples_in / self.input.rate if self.input.rate else 0.0

    @property
    def consumed_seconds(self) -> float:
        """Input the engine has taken from the queue so far, in seconds of the input (audio the VAD
        gate dropped included): what a decode step costs, read by admission and the metrics."""
        q = self.input
        return q.samples_in / q.rate - q.pending_seconds if q.rate else 0.0

    @property
    def engine_samples(self) -> int:
        """16 kHz samples the engine was given (after the gate; the end flush excluded): the clock of
        event times. The energy track holds exactly this audio, so its end is the clock, not a second
        count of the stream's samples."""
        return self._energy.end

    @property
    def pending_bytes(self) -> int:
        return self.input.pending_bytes + self.feed.held.nbytes

    @property
    def held_samples(self) -> int:
        """16 kHz audio past the gate that earlier capped steps left for later ones."""
        return len(self.feed.held)

    @property
    def backlog_samples(self) -> int:
        """Audio not yet decoded (16 kHz): held, plus queued input (an upper bound: before the gate)."""
        return len(self.feed.held) + self.pending_samples

    def ready(self) -> bool:
        """True when decoding has work: queued or held audio, or an unfinished end of stream."""
        return not self.finished and (len(self.feed.held) > 0 or self.input.has_input())

    def reset(self) -> None:
        """Forget everything (audio, history, timers); keep tenant, subset and options."""
        with self.input.lock:
            if self._decoding:
                raise StreamStateError("reset() while the stream is being decoded")
            self._reset_state()

    # -- the engine's step, in order ---------------------------------------------------------------------
    def claim(self) -> None:
        """Mark the stream as being decoded; raises if it already is (two threads at once)."""
        with self.input.lock:
            if self._decoding:
                raise StreamStateError("a stream was decoded from two threads at once")
            self._decoding = True

    def release(self) -> None:
        self._decoding = False

    def begin(self, step_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Take up to ``step_samples`` (at most ``max_step_samples``) of audio past the gate:
        (front-end audio incl. its tail, mel tail). What the gate releases beyond it (an onset's
        pre-roll) is held for the next steps; features, and so events, do not depend on the cap."""
        if self.finished:
            self._last_step = False
            return self._audio_tail, self._mel_tail
        cap = self.params.max_step_samples
        audio, last = self.feed.take(cap if step_samples is None else max(1, min(cap, step_samples)))
        self._energy.push(audio)  # engine clock = gated audio; decide() maps times back
        if last:  # end-of-stream flush: silence lets windows ending after the last real sample be scored
            audio = np.concatenate([audio, np.zeros(self.params.receptive, np.float32)])
        self._last_step = last
        return (np.concatenate([self._audio_tail, audio]) if len(self._audio_tail) else audio), self._mel_tail

    def accept_features(self, step: FrontEndStep) -> np.ndarray:
        """New features -> the acoustic encoder's input row (previous context + new features)."""
        self._audio_tail, self._mel_tail = step.audio_tail, step.mel_tail
        self._first_new = self.num_features
        self.num_features += len(step.features)
        x = np.concatenate([self._ctx, step.features]) if len(step.features) else self._ctx
        ctx = self.params.plan.context
        self._ctx = x[-ctx:] if ctx else x[:0]
        return x

    def accept_frames(self, frames: np.ndarray) -> tuple[list[Window], np.ndarray]:
        """New acoustic frames -> the windows ending in this step and the frame array they index."""
        plan = self.params.plan
        local = np.concatenate([self._hist, frames]) if len(frames) else self._hist
        base = max(0, self.num_features - plan.context) - len(local)  # acoustic frame index of local[0]
        windows = [
            Window(t, start, w, t - plan.context - start + 1, start - base)
            for t in range(self._first_new, self.num_features)
            for start, w in plan.ending_at(t)
        ]
        keep = self.params.history_frames
        self._hist = local[-keep:] if keep > 0 else local[:0]
        return windows, local

    def keyword_view(self, tenant_index: TenantIndex) -> KeywordView | None:
        """(ids, proxies, thresholds) of this stream's keyword subset (cached per snapshot); None = all."""
        if self.keyword_subset is None:
            return None
        c = self._subset_cache
        if c is None or c[0] is not tenant_index:
            c = (tenant_index, tenant_index.subset(self.keyword_subset))
            self._subset_cache = c
        return c[1]

    def decide(
        self,
        windows: list[Window],
        scores: list[WindowScores],
        embeddings: np.ndarray,
        tenant_index: TenantIndex,
    ) -> DecodeResult:
        """The scores of this step's windows -> detections and near-misses (the stream decides)."""
        subset = self.keyword_subset
        enrolled: Callable[[int], bool] = (
            tenant_index.__contains__
            if subset is None
            else (lambda kid: kid in subset and kid in tenant_index)
        )
        res = DecodeResult()
        j = 0
        while j < len(windows):
            frame = windows[j].frame
            k = j
            while k < len(windows) and windows[k].frame == frame:
                k += 1
            self._decide_frame(frame, windows[j:k], scores[j:k], embeddings[j:k], tenant_index, enrolled, res)
            j = k
        if self._last_step:
            end_frame = max(0, self.num_features - 1)
            self._emit(self._decider.finish(end_frame, enrolled), tenant_index, res)
            self._lost_to_near_misses(tenant_index)
            if self.debug and self._nm_best:
                self._flush_near_miss(end_frame, res)
            self._decider.forget(enrolled)
            self.finished = res.finished = True
        return res if self.gate is None else self.gate.map_result(res)

    def end(self) -> None:
        self.release()

    # -- decisions -------------------------------------------------------------------------------------
    def _decide_frame(
        self,
        frame: int,
        windows: list[Window],
        scores: list[WindowScores],
        emb: np.ndarray,
        tenant_index: TenantIndex,
        enrolled: Callable[[int], bool],
        res: DecodeResult,
    ) -> None:
        above: dict[int, Hit] = {}
        near: dict[int, tuple[float, float]] = {}
        top: tuple[int, float] = (-1, -np.inf)
        for w, sc in zip(windows, scores, strict=True):
            if sc.top[0] >= 0 and sc.top[1] > top[1]:
                top = sc.top
            for kid_, score_, thr_ in zip(
                sc.ids.tolist(), sc.scores.tolist(), sc.thresholds.tolist(), strict=True
            ):
                if kid_ < 0:
                    continue
                if score_ >= thr_:
                    h = above.get(kid_)
                    if h is None or score_ > h.score:
                        above[kid_] = Hit(score_, w.start, frame)
                elif score_ > near.get(kid_, (-np.inf, 0.0))[0]:
                    near[kid_] = (score_, thr_)
        if self.trace is not None:
            self.trace.append(TracePoint(frame, top[0], top[1] if top[0] >= 0 else 0.0))
        if self.score_hook is not None:
            self.score_hook(
                FrameScores(
                    frame, self.params.ms(frame, self.engine_samples), tuple(w.start for w in windows), emb
                )
            )
        self._emit(self._decider.step(frame, above, enrolled), tenant_index, res)
        self._lost_to_near_misses(tenant_index)
        if self.debug:
            self._near_miss(frame, tenant_index, near, above, res)

    def _emit(self, decisions: list[Decision], tenant_index: TenantIndex, res: DecodeResult) -> None:
        p, limit = self.params, self.engine_samples
        for d in decisions:
            e = tenant_index.by_id[d.keyword_id]
            start = max(0, d.start_frame * p.hop - p.preroll)
            end = max(0, min(d.end_frame * p.hop + p.receptive - p.preroll, limit))
            if end <= start:  # the window holds only the pre-roll or the end flush: no real audio
                continue
            start, end = self._energy.speech_span(start, end)  # the keyword within the window
            res.detections.append(
                Detection(
                    d.keyword_id,
                    e.text,
                    round(d.score, 6),
                    e.threshold,
                    1000.0 * start / SAMPLE_RATE,
                    1000.0 * max(start, end) / SAMPLE_RATE,
                    p.ms(d.decided_frame, limit),
                )
            )

    def _lost_to_near_misses(self, tenant_index: TenantIndex) -> None:
        for d in self._decider.take_lost():
            if self.debug and d.keyword_id in tenant_index:
                self._note_near(d.keyword_id, d.score, tenant_index)

    def _note_near(self, kid: int, score: float, tenant_index: TenantIndex) -> None:
        e = tenant_index.by_id[kid]
        prev = self._nm_best.get(kid)
        if prev is None or score > prev.score:
            self._nm_best[kid] = Candidate(kid, e.text, round(score, 6), e.threshold)

    def _near_miss(
        self,
        frame: int,
        tenant_index: TenantIndex,
        near: dict[int, tuple[float, float]],
        above: dict[int, Hit],
        res: DecodeResult,
    ) -> None:
        for kid, (score, _thr) in near.items():
            if kid not in above and kid in tenant_index:
                self._note_near(kid, score, tenant_index)
        if frame - self._nm_start + 1 >= self.params.near_miss_frames:
            if self._nm_best:
                self._flush_near_miss(frame, res)
            self._nm_start = frame + 1

    def _flush_near_miss(self, frame: int, res: DecodeResult) -> None:
        best = sorted(self._nm_best.values(), key=lambda c: (-c.score, c.keyword_id))[
            : self.params.near_miss_top
        ]
        res.near_misses.append(NearMiss(self.params.ms(frame, self.engine_samples), tuple(best)))
        self._nm_best = {}

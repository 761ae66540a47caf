"""The shared detector (:class:`Spotter`) and its small per-stream state (:class:`KeywordStream`).

The split follows sherpa-onnx: one ``Spotter`` owns the ONNX sessions, the G2P and the keyword
index; ``spotter.create_stream()`` returns the state of one audio stream (front-end tail, acoustic
frame history, debounce timers). The models hold no stream state, so any number of streams can be
decoded together in one batch: :meth:`Spotter.decode_streams` is the only inference entry point, and
offline detection is just one stream fed a whole file.

Geometry (all in *feature frames* of ``hop`` samples; see ``openkws.engine.model_spec``):

* feature frame ``t`` covers audio samples ``[t*hop, t*hop + receptive)`` and is computed once;
* ``acoustic_frames`` turns features ``[j, j + context]`` into acoustic frame ``j``; each stream
  caches these in a bounded history, so every acoustic frame is also computed once;
* every ``window_stride_frames`` frames, at frame ``t``, one window per length ``W`` in
  ``windows_frames`` ends at ``t``: features ``[t-W+1, t]``, i.e. acoustic frames ``[t-W+1, t-context]``
  (near the stream start, windows longer than the audio so far are clipped to it, once), pooled by
  ``acoustic_pool`` into an L2-normalized embedding and compared by cosine with the keyword proxies;
* a detection reports the best window's audio span ``[(t-W+1)*hop, t*hop + receptive)`` as
  ``start_ms``/``end_ms`` (the keyword lies within it), and ``decided_ms``, the stream time of the
  audio that completed the decision.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SAMPLE_RATE
from ..text import G2P, Pronunciation
from .acoustic_proxy import AcousticProxies
from .decision import Decider, Hit
from .features import FeatureExtractor, FeatureStream
from .index import KeywordEntry, KeywordIndex, TenantIndex, l2_normalize
from .model_spec import ModelSpec, load_spec
from .prefilter import ThresholdScorer
from .runtime import Device, ModelSessions, load_sessions

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class DetectorConfig:
    """Decision and batching knobs of the detector (times in ms, converted to frames per model)."""

    hold_ms: int = 240  # longest wait for a candidate's peak before emitting it
    refractory_ms: int = 1000  # no second event of the same keyword within this time
    # Any window sharing audio with the last event of that keyword is the same utterance: long windows
    # keep scoring a keyword after it was spoken (seen with the trained model: a 2nd event over the tail).
    max_overlap: float = 0.0
    top_k: int = 16  # candidates per window taken from the index
    near_miss_margin: float = 0.15  # debug: report keywords within this margin below threshold
    near_miss_interval_ms: int = 400  # debug: at most one near-miss message per interval
    near_miss_top: int = 3
    max_step_seconds: float = 10.0  # audio consumed per stream per decode call (bounds memory)
    max_windows_per_run: int = 512  # acoustic_pool batch cap


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
    """The best keywords that scored within ``near_miss_margin`` below threshold in one interval."""

    time_ms: float
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class TracePoint:
    """Top-1 keyword of one evaluated frame (``keyword_id`` -1 when nothing is enrolled)."""

    frame: int
    keyword_id: int
    score: float


@dataclass
class DecodeResult:
    detections: list[Detection] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)
    finished: bool = False


@dataclass
class _Window:
    row: int  # index of the stream in the batch
    frame: int  # feature frame the window ends at
    start: int  # first feature frame
    group: int  # nominal window length W (the acoustic_pool batch it joins)
    count: int  # valid acoustic frames
    first: int  # index of its first acoustic frame in the stream's local frame array


@dataclass(frozen=True)
class _CachedScorer:
    proxies_src: np.ndarray
    thresholds_src: np.ndarray
    scorer: ThresholdScorer


class StreamStateError(RuntimeError):
    """A stream was used wrongly (audio after finish, or two decodes at once)."""


class KeywordStream:
    """State of one audio stream. Create with :meth:`Spotter.create_stream`; cheap, not thread-shared.

    ``accept_waveform`` may be called from any thread (it only appends); ``decode`` runs the models
    and must not run concurrently for the same stream.
    """

    def __init__(self, spotter: Spotter, tenant: str, keyword_subset: Iterable[int] | None, debug: bool,
                 trace: bool) -> None:
        self.spotter = spotter
        self.tenant = tenant
        self.keyword_subset: frozenset[int] | None = None if keyword_subset is None else frozenset(keyword_subset)
        self.debug = debug
        self.trace: list[TracePoint] | None = [] if trace else None
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        sp = self.spotter
        self._features: FeatureStream = sp.features.stream()
        self._ctx = np.zeros((0, sp.spec.feature_dim), np.float32)  # last `context` feature frames
        self._hist = np.zeros((0, sp.spec.frame_dim), np.float32)  # recent acoustic frames
        self.num_features = 0
        self.samples_received = 0  # real audio (16 kHz samples), excluding the end-of-stream flush
        self._finish_requested = False
        self.finished = False
        self._decider = Decider(sp.hold_frames, sp.refractory_frames, sp.config.max_overlap)
        self._nm_best: dict[int, Candidate] = {}
        self._nm_start = 0
        self._subset_cache: tuple[TenantIndex, np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- input ---------------------------------------------------------------------------------
    def accept_waveform(self, samples: np.ndarray) -> None:
        """Queue 16 kHz mono float32 audio in [-1, 1]."""
        x = np.asarray(samples, np.float32).reshape(-1)
        with self._lock:
            if self._finish_requested:
                raise StreamStateError("audio after input_finished(); call reset() to start a new stream")
            if len(x):
                self._pending.append(x)
                self._pending_samples += len(x)
                self.samples_received += len(x)

    def input_finished(self) -> None:
        """No more audio: the next decode flushes the tail and emits pending candidates."""
        with self._lock:
            self._finish_requested = True

    @property
    def pending_samples(self) -> int:
        return self._pending_samples

    def ready(self) -> bool:
        """True when :meth:`decode` has work: queued audio, or an unfinished end of stream."""
        return self._pending_samples > 0 or (self._finish_requested and not self.finished)

    def reset(self) -> None:
        """Forget everything (audio, history, timers); keep tenant, subset and options."""
        with self._lock:
            self._pending.clear()
            self._pending_samples = 0
            if self.trace is not None:
                self.trace = []
            self._reset_state()

    def decode(self) -> DecodeResult:
        """Process everything queued (in steps); same as ``spotter.decode_streams([self])``."""
        out = DecodeResult()
        while self.ready():
            r = self.spotter.decode_streams([self])[0]
            out.detections += r.detections
            out.near_misses += r.near_misses
            out.finished = r.finished
        return out

    # -- internals used by Spotter.decode_streams ---------------------------------------------
    def _take(self, max_samples: int) -> tuple[np.ndarray, bool]:
        """Up to ``max_samples`` queued samples, and whether this step ends the stream."""
        with self._lock:
            if self._pending_samples <= max_samples:
                chunks, self._pending, self._pending_samples = self._pending, [], 0
            else:
                chunks, taken = [], 0
                while taken < max_samples:
                    c = self._pending[0]
                    need = max_samples - taken
                    if len(c) <= need:
                        chunks.append(self._pending.pop(0))
                        taken += len(c)
                    else:
                        chunks.append(c[:need])
                        self._pending[0] = c[need:]
                        taken += need
                self._pending_samples -= taken
            last = self._finish_requested and self._pending_samples == 0
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return audio, last

    def _view(self, tenant_index: TenantIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(ids, proxies, thresholds) for a keyword subset, cached per index snapshot; None = all."""
        if self.keyword_subset is None:
            return None
        c = self._subset_cache
        if c is None or c[0] is not tenant_index:
            ids, prox, thr = tenant_index.subset(self.keyword_subset)
            c = (tenant_index, ids, prox, thr)
            self._subset_cache = c
        return c[1], c[2], c[3]

    def _enrolled(self, tenant_index: TenantIndex) -> Callable[[int], bool]:
        subset = self.keyword_subset
        if subset is None:
            return tenant_index.__contains__
        return lambda kid: kid in subset and kid in tenant_index


class Spotter:
    """Models + G2P + keyword index, shared by all streams. Thread-safe; load once per process."""

    def __init__(self, sessions: ModelSessions, config: DetectorConfig | None = None, g2p: G2P | None = None,
                 prefer_gpu_index: bool = False) -> None:
        spec = sessions.spec
        self.spec: ModelSpec = spec
        self.sessions = sessions
        self.config = config or DetectorConfig()
        self.g2p = g2p or G2P()
        self.features = FeatureExtractor(
            spec.frontend, Path(), None, mel_session=sessions.melspectrogram,
            embedding_session=sessions.speech_embedding,
        )
        self.index = KeywordIndex(spec.embedding_dim, prefer_gpu=prefer_gpu_index)
        self._acoustic_proxies = AcousticProxies(spec, self.features.features, sessions.acoustic_frames,
                                                 sessions.acoustic_pool)
        self.hop = spec.feature_hop_samples
        self.receptive = spec.feature_receptive_samples
        self.context = spec.acoustic_context_frames
        self.windows = tuple(sorted(set(spec.windows_frames)))
        self.stride = spec.window_stride_frames
        frame_ms = 1000.0 * self.hop / SAMPLE_RATE
        self.hold_frames = max(0, round(self.config.hold_ms / frame_ms))
        self.refractory_frames = max(0, round(self.config.refractory_ms / frame_ms))
        self.near_miss_frames = max(1, round(self.config.near_miss_interval_ms / frame_ms))
        self.max_step_samples = max(self.hop, int(self.config.max_step_seconds * SAMPLE_RATE))
        self._hist_keep = max(self.windows) - self.context - 1
        self._scorers: dict[int, _CachedScorer] = {}

    @classmethod
    def load(cls, model_dir: Path, config: DetectorConfig | None = None, device: Device = "auto",
             threads: int = 1, g2p: G2P | None = None, verify_hashes: bool = True) -> Spotter:
        spec = load_spec(Path(model_dir), verify_hashes=verify_hashes)
        sessions = load_sessions(spec, Path(model_dir), device=device, threads=threads)
        return cls(sessions, config, g2p, prefer_gpu_index=device != "cpu")

    @property
    def onnx_backend(self) -> str:
        return self.sessions.providers.backend

    @property
    def index_backend(self) -> str:
        return self.index.backend

    @property
    def default_threshold(self) -> float:
        return self.spec.default_threshold

    # -- text side ------------------------------------------------------------------------------
    def pronounce(self, text: str) -> Pronunciation:
        """Normalize and phonemize keyword text; raises ``G2PError`` with a rule code."""
        return self.g2p(text)

    def embed_phoneme_ids(self, seqs: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        """Phoneme id sequences -> L2-normalized proxies [B, D]."""
        out = []
        for i in range(0, len(seqs), batch):
            chunk = seqs[i : i + batch]
            lengths = np.array([len(s) for s in chunk], np.int64)
            ids = np.zeros((len(chunk), int(lengths.max())), np.int64)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = s
            out.append(self.sessions.text.run(None, {"phoneme_ids": ids, "lengths": lengths})[0])
        if not out:
            return np.zeros((0, self.spec.embedding_dim), np.float32)
        return l2_normalize(np.concatenate(out))

    def acoustic_proxy(self, renditions: Sequence[np.ndarray]) -> np.ndarray:
        """Spoken renditions of one keyword (16 kHz float32) -> its L2-normalised acoustic proxy [D]."""
        return self._acoustic_proxies(renditions)

    @property
    def acoustic_fingerprint(self) -> str:
        """Identifies the audio side of the model (front-end + acoustic encoder files): a stored
        acoustic proxy is valid only for the model that computed it."""
        roles = sorted(r for r in self.spec.files if r != "text")
        digest = hashlib.sha256("|".join(f"{r}:{self.spec.files[r].sha256}" for r in roles).encode())
        return digest.hexdigest()[:32]

    # -- streams ---------------------------------------------------------------------------------
    def create_stream(self, keyword_subset: Iterable[int] | None = None, tenant: str = DEFAULT_TENANT,
                      debug: bool = False, trace: bool = False) -> KeywordStream:
        return KeywordStream(self, tenant, keyword_subset, debug, trace)

    def span_ms(self, start_frame: int, end_frame: int, limit_samples: int) -> tuple[float, float]:
        start = max(0, start_frame * self.hop)
        end = min(end_frame * self.hop + self.receptive, limit_samples)
        return 1000.0 * start / SAMPLE_RATE, 1000.0 * max(start, end) / SAMPLE_RATE

    def decode_streams(self, streams: Sequence[KeywordStream]) -> list[DecodeResult]:
        """One batched step over several streams: front-end, acoustic frames, windows, scores, decisions.

        Each stream consumes up to ``max_step_seconds`` of its queued audio; call again while
        ``stream.ready()``. Raises :class:`StreamStateError` if a stream is already being decoded.
        """
        acquired: list[KeywordStream] = []
        try:
            for s in streams:
                if not s._busy.acquire(blocking=False):
                    raise StreamStateError("a stream was decoded from two threads at once")
                acquired.append(s)
            return self._decode(streams)
        finally:
            for s in acquired:
                s._busy.release()

    def _decode(self, streams: Sequence[KeywordStream]) -> list[DecodeResult]:
        ctx, stride, wmin = self.context, self.stride, self.windows[0]
        results = [DecodeResult() for _ in streams]
        lasts: list[bool] = []
        starts: list[int] = []  # feature index of the first new feature per stream
        inputs: list[np.ndarray] = []
        for s in streams:
            audio, last = s._take(self.max_step_samples)
            if last and not s.finished:
                # End-of-stream flush: silence lets windows ending after the last real sample be scored.
                audio = np.concatenate([audio, np.zeros(self.receptive, np.float32)])
            elif s.finished:
                audio, last = np.zeros(0, np.float32), False
            lasts.append(last)
            feats = s._features.accept(audio) if len(audio) else np.zeros((0, self.spec.feature_dim), np.float32)
            starts.append(s.num_features)
            s.num_features += len(feats)
            inputs.append(np.concatenate([s._ctx, feats]) if len(feats) else s._ctx)
        new_frames = self._acoustic_frames(inputs)

        # Local acoustic frame arrays (history + new) and the windows that end in this step.
        windows: list[_Window] = []
        locals_: list[np.ndarray] = []
        bases: list[int] = []  # acoustic frame index of locals_[i][0]
        for i, s in enumerate(streams):
            x = inputs[i]
            s._ctx = x[-ctx:] if ctx else x[:0]
            local = np.concatenate([s._hist, new_frames[i]]) if len(new_frames[i]) else s._hist
            base = max(0, s.num_features - ctx) - len(local)
            locals_.append(local)
            bases.append(base)
            for t in range(starts[i], s.num_features):
                if (t + 1) % stride or t + 1 < wmin:
                    continue
                clipped = False
                for w in self.windows:
                    if t + 1 >= w:
                        start = t - w + 1
                    elif not clipped:
                        clipped, start = True, 0
                    else:
                        break
                    count = t - ctx - start + 1
                    windows.append(_Window(i, t, start, w, count, start - base))
            s._hist = local[-self._hist_keep :] if self._hist_keep > 0 else local[:0]

        embeddings = self._pool(windows, locals_)
        self._score_and_decide(streams, windows, embeddings, results, lasts)
        return results

    def _acoustic_frames(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Batch rows of equal length through ``acoustic_frames``; -> [L - context, C] per row."""
        ctx, c = self.context, self.spec.frame_dim
        out = [np.zeros((0, c), np.float32) for _ in inputs]
        by_len: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            if len(x) > ctx:
                by_len.setdefault(len(x), []).append(i)
        sess = self.sessions.acoustic_frames
        for length, rows in by_len.items():
            cap = max(1, 4096 // length)
            for j in range(0, len(rows), cap):
                part = rows[j : j + cap]
                batch = np.stack([inputs[i] for i in part])
                y = sess.run(None, {"features": batch})[0]
                for r, i in enumerate(part):
                    out[i] = y[r]
        return out

    def _pool(self, windows: list[_Window], locals_: list[np.ndarray]) -> np.ndarray:
        """Embed every window with ``acoustic_pool``, batched by nominal length (masked when clipped)."""
        emb = np.zeros((len(windows), self.spec.embedding_dim), np.float32)
        by_group: dict[int, list[int]] = {}
        for k, w in enumerate(windows):
            by_group.setdefault(w.group, []).append(k)
        sess = self.sessions.acoustic_pool
        cap = self.config.max_windows_per_run
        for group, members in by_group.items():
            length = group - self.context
            for j in range(0, len(members), cap):
                part = members[j : j + cap]
                frames = np.zeros((len(part), length, self.spec.frame_dim), np.float32)
                mask = np.zeros((len(part), length), np.float32)
                for r, k in enumerate(part):
                    w = windows[k]
                    frames[r, : w.count] = locals_[w.row][w.first : w.first + w.count]
                    mask[r, : w.count] = 1.0
                emb[part] = sess.run(None, {"frames": frames, "mask": mask})[0]
        return l2_normalize(emb) if len(windows) else emb

    def _score_and_decide(self, streams: Sequence[KeywordStream], windows: list[_Window], emb: np.ndarray,
                          results: list[DecodeResult], lasts: list[bool]) -> None:
        cfg = self.config
        tenants = {s.tenant: self.index.tenant(s.tenant) for s in streams}  # one snapshot per decode
        by_row: dict[int, list[int]] = {}
        for k, w in enumerate(windows):
            by_row.setdefault(w.row, []).append(k)
        # Candidates per window: every keyword scoring at or above its threshold (its near-miss floor
        # in debug mode), exactly, with no top-k cut. On CPU one BLAS matrix product per tenant covers
        # the windows of all whole-tenant streams in the batch, then a threshold mask; a subset stream
        # multiplies by its subset's proxies. A GPU index uses FAISS top-k search instead.
        n = len(windows)
        cand_ids: list[np.ndarray] = [np.zeros(0, np.int64)] * n
        cand_scores: list[np.ndarray] = [np.zeros(0, np.float32)] * n
        cand_thr: list[np.ndarray] = [np.zeros(0, np.float32)] * n
        top1: list[tuple[int, float]] = [(-1, 0.0)] * n
        margin = np.zeros(n, np.float32)
        want_top = np.zeros(n, bool)
        groups: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]] = {}
        for i, s in enumerate(streams):
            rows = by_row.get(i, [])
            if not rows:
                continue
            margin[rows] = cfg.near_miss_margin if s.debug else 0.0
            want_top[rows] = s.trace is not None
            t_index = tenants[s.tenant]
            view = s._view(t_index)
            if view is None:
                if t_index.backend == "gpu":
                    scores, ids = t_index.search(emb[rows], cfg.top_k)
                    thr = t_index.thresholds_for(ids)
                    for r, kw in enumerate(rows):
                        keep = scores[r] >= thr[r] - margin[kw]
                        cand_ids[kw], cand_scores[kw], cand_thr[kw] = ids[r][keep], scores[r][keep], thr[r][keep]
                        if len(ids[r]) and ids[r][0] >= 0:
                            top1[kw] = (int(ids[r][0]), float(scores[r][0]))
                    continue
                key = (s.tenant, 0)
                view = (t_index.ids, t_index.proxies, t_index.thresholds)
            else:
                key = (s.tenant, id(s))
            groups.setdefault(key, (*view, []))[3].extend(rows)
        for ids, prox, thr, rows in groups.values():
            if len(ids) == 0:
                continue
            scorer = self._scorer(prox, thr)  # exact hits; int8 prefilter for large sets (engine/prefilter.py)
            for c in range(0, len(rows), 256):
                part = rows[c : c + 256]
                hit_r, hit_k, hit_s = scorer.hits(emb[part], margin[part])
                bounds = np.searchsorted(hit_r, np.arange(len(part) + 1))
                for r, kw in enumerate(part):
                    ks = hit_k[bounds[r] : bounds[r + 1]]
                    if len(ks):
                        cand_ids[kw], cand_scores[kw], cand_thr[kw] = ids[ks], hit_s[bounds[r] : bounds[r + 1]], thr[ks]
                    if want_top[kw]:
                        sims = prox @ emb[kw]
                        b = int(np.argmax(sims))
                        top1[kw] = (int(ids[b]), float(sims[b]))

        for i, s in enumerate(streams):
            t_index = tenants[s.tenant]
            enrolled = s._enrolled(t_index)
            res = results[i]
            rows = by_row.get(i, [])
            limit = s.samples_received
            j = 0
            while j < len(rows):
                frame = windows[rows[j]].frame
                above: dict[int, Hit] = {}
                near: dict[int, tuple[float, float]] = {}
                top: tuple[int, float] = (-1, -np.inf)
                while j < len(rows) and windows[rows[j]].frame == frame:
                    kw = rows[j]
                    w = windows[kw]
                    ids, sc, th = cand_ids[kw], cand_scores[kw], cand_thr[kw]
                    if top1[kw][0] >= 0 and top1[kw][1] > top[1]:
                        top = top1[kw]
                    for m in range(len(ids)):
                        kid, score = int(ids[m]), float(sc[m])
                        if kid < 0:
                            continue
                        if score >= th[m]:
                            h = above.get(kid)
                            if h is None or score > h.score:
                                above[kid] = Hit(score, w.start, frame)
                        elif score > near.get(kid, (-np.inf, 0.0))[0]:
                            near[kid] = (score, float(th[m]))
                    j += 1
                if s.trace is not None:
                    s.trace.append(TracePoint(frame, top[0], top[1] if top[0] >= 0 else 0.0))
                for d in s._decider.step(frame, above, enrolled):
                    res.detections.append(self._detection(t_index, d.keyword_id, d.score, d.start_frame,
                                                           d.end_frame, d.decided_frame, limit))
                if s.debug:
                    self._near_miss(s, t_index, frame, near, above, res, limit)
            if lasts[i]:
                end_frame = max(0, s.num_features - 1)
                for d in s._decider.finish(end_frame, enrolled):
                    res.detections.append(self._detection(t_index, d.keyword_id, d.score, d.start_frame,
                                                           d.end_frame, d.decided_frame, limit))
                if s.debug and s._nm_best:
                    self._flush_near_miss(s, end_frame, res, limit)
                s._decider.forget(enrolled)
                s.finished = True
                res.finished = True

    def _scorer(self, prox: np.ndarray, thr: np.ndarray) -> ThresholdScorer:
        """The scorer of one keyword set, cached while the index snapshot (its arrays) lives."""
        hit = self._scorers.get(id(prox))
        if hit is None or hit.proxies_src is not prox or hit.thresholds_src is not thr:
            if len(self._scorers) > 256:
                self._scorers.clear()
            hit = _CachedScorer(prox, thr, ThresholdScorer(prox, thr))
            self._scorers[id(prox)] = hit
        return hit.scorer

    def _detection(self, t_index: TenantIndex, kid: int, score: float, start: int, end: int, decided: int,
                   limit: int) -> Detection:
        e = t_index.by_id[kid]
        start_ms, end_ms = self.span_ms(start, end, limit)
        decided_ms = 1000.0 * min(decided * self.hop + self.receptive, limit) / SAMPLE_RATE
        return Detection(kid, e.text, round(score, 6), e.threshold, start_ms, end_ms, decided_ms)

    def _near_miss(self, s: KeywordStream, t_index: TenantIndex, frame: int, near: dict[int, tuple[float, float]],
                   above: dict[int, Hit], res: DecodeResult, limit: int) -> None:
        for kid, (score, thr) in near.items():
            if kid in above or kid not in t_index:
                continue
            prev = s._nm_best.get(kid)
            if prev is None or score > prev.score:
                s._nm_best[kid] = Candidate(kid, t_index.by_id[kid].text, round(score, 6), thr)
        if frame - s._nm_start + 1 >= self.near_miss_frames:
            if s._nm_best:
                self._flush_near_miss(s, frame, res, limit)
            s._nm_start = frame + 1

    def _flush_near_miss(self, s: KeywordStream, frame: int, res: DecodeResult, limit: int) -> None:
        best = sorted(s._nm_best.values(), key=lambda c: (-c.score, c.keyword_id))[: self.config.near_miss_top]
        time_ms = 1000.0 * min(frame * self.hop + self.receptive, limit) / SAMPLE_RATE
        res.near_misses.append(NearMiss(time_ms, tuple(best)))
        s._nm_best = {}

    # -- keyword index helpers ---------------------------------------------------------------------
    def entries_from(self, rows: Sequence[tuple[int, str, str, tuple[str, ...], float]]) -> list[KeywordEntry]:
        """(id, tenant, text, phonemes, threshold) rows -> index entries with freshly computed proxies."""
        inv = self.g2p.inventory
        proxies = self.embed_phoneme_ids([inv.encode(list(r[3])) for r in rows])
        return [KeywordEntry(r[0], r[1], r[2], r[3], r[4], proxies[k]) for k, r in enumerate(rows)]

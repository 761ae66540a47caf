"""The shared detector (:class:`Spotter`): models, G2P and keyword index, shared by all streams.

The split follows sherpa-onnx: one ``Spotter`` owns the encoders (:mod:`.encoders`, every ONNX
call), the G2P and the keyword index; ``spotter.create_stream()`` returns the state of one audio
stream (:class:`~openkws.engine.stream.KeywordStream`). The models hold no stream state, so any
number of streams are decoded together in one batch: :meth:`Spotter.decode_streams` is the only
inference entry point, and offline detection is just one stream fed a whole file.

One step over a batch of streams (each stage one batched call over all streams):

1. each stream hands over its new 16 kHz audio (``KeywordStream.begin``);
2. front-end: mel and speech embedding (:meth:`FeatureExtractor.step`); feature frame ``t`` covers
   audio samples ``[t*hop, t*hop + receptive)`` and is computed once;
3. ``acoustic_frames`` turns features ``[j, j + context]`` into acoustic frame ``j``; each stream
   keeps these in a bounded history, so every acoustic frame is also computed once;
4. the window plan (:class:`~openkws.engine.model_spec.WindowPlan`) says which windows end at each
   frame; ``acoustic_pool`` embeds them (batched by nominal length, masked when clipped);
5. :func:`~openkws.engine.scoring.score_windows` compares them with the keyword proxies;
6. each stream decides (``KeywordStream.decide``): a detection reports the speech inside the best
   window's audio span ``[(t-W+1)*hop, t*hop + receptive)`` as ``start_ms``/``end_ms``
   (:mod:`.span`) and ``decided_ms``, the stream time of the audio that completed the decision.

Every stream starts with ``DetectorConfig.preroll_ms`` of virtual silence (default: the front-end's
receptive field), so a keyword spoken in its first milliseconds has the same silent context as one
spoken later; all reported times are in the caller's time, from its first real sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.acoustic_proxy import AcousticProxies, ProxyMode, combine_proxies
from openkws.engine.cohort import Cohort
from openkws.engine.decision import COMPETITIONS, DECISION_MODES, Competition, DecisionMode
from openkws.engine.encoders import Encoders, FeatureExtractor
from openkws.engine.events import (
    DecodeResult,
    ScoreHook,
)
from openkws.engine.index import KeywordEntry, KeywordIndex, l2_normalize
from openkws.engine.model_spec import ModelSpec, acoustic_fingerprint, load_spec
from openkws.engine.model_spec import proxy_fingerprint as fingerprint_of_proxy
from openkws.engine.runtime import Device, ModelSessions, load_sessions
from openkws.engine.scoring import ScoreRequest, score_windows
from openkws.engine.stream import KeywordStream, StreamParams, Window
from openkws.engine.vad import VadConfig
from openkws.engine.whitening import Whitening, read_whitening
from openkws.text import G2P, Pronunciation

__all__ = ["DEFAULT_TENANT", "DetectorConfig", "Enrollment", "Spotter"]

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class DetectorConfig:
    """Decision and batching knobs of the detector (times in ms, converted to frames per model)."""

    hold_ms: int = 240  # longest wait for a candidate's peak before emitting it ("hold" decision)
    # "peak": emit once the score stops rising, at most peak_max_ms after it first crossed (issue 21)
    decision: DecisionMode = "hold"
    peak_max_ms: int = 200
    persistence: int = 1  # consecutive over-threshold frames a candidate needs before it is emitted
    cohort: bool = False  # cohort-normalised scores (engine/cohort.py); thresholds are on that scale
    refractory_ms: int = 1000  # no second event of the same keyword within this time
    # Any window sharing audio with the last event of that keyword is the same utterance: long windows
    # keep scoring a keyword after it was spoken (seen with the trained model: a 2nd event over the tail).
    max_overlap: float = 0.0
    top_k: int = 16  # candidates per window taken from a GPU index
    near_miss_margin: float = 0.15  # debug: report keywords within this margin below threshold
    near_miss_interval_ms: int = 400  # debug: at most one near-miss message per interval
    near_miss_top: int = 3
    max_step_seconds: float = 10.0  # audio consumed per stream per decode call (bounds memory)
    max_windows_per_run: int = 512  # acoustic_pool batch cap
    # Score windows every n-th feature frame instead of the model's ``window_stride_frames`` (None):
    # coarser and cheaper; the calibration bank samples background audio this way.
    window_stride_frames: int | None = None
    # Virtual silence ahead of each stream's first sample (None: the front-end's receptive field), so
    # a keyword at the very start scores as after silence; reported times exclude it. 0: none.
    preroll_ms: int | None = None

    def __post_init__(self) -> None:
        if self.window_stride_frames is not None and self.window_stride_frames < 1:
            raise ValueError(f"window_stride_frames must be >= 1 or None, got {self.window_stride_frames}")


@dataclass(frozen=True)
class Enrollment:
    """One keyword for :meth:`Spotter.enroll`: its index row and how its proxy is made."""

    id: int
    tenant: str
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    mode: ProxyMode = "text"  # text encoder, acoustic proxy ("tts") or their normalised sum ("both")
    acoustic: np.ndarray | None = None  # [D], ``Spotter.acoustic_proxy`` of renditions; tts/both only
    proxy: np.ndarray | None = None  # [D], a final proxy made earlier (stored with the keyword): used as is


class Spotter:
    """Encoders + G2P + keyword index, shared by all streams. Thread-safe; load once per process."""

    def __init__(
        self,
        sessions: ModelSessions,
        config: DetectorConfig | None = None,
        g2p: G2P | None = None,
        prefer_gpu_index: bool = False,
        whitening: Whitening | None = None,
    ) -> None:
        spec = sessions.spec
        self.spec: ModelSpec = spec
        self.sessions = sessions
        self.config = cfg = config or DetectorConfig()
        self.g2p = g2p or G2P()
        self.features = FeatureExtractor(
            spec.frontend,
            Path(),
            None,
            mel_session=sessions.melspectrogram,
            embedding_session=sessions.speech_embedding,
        )
        self.encoders = Encoders(
            spec,
            self.features,
            sessions.acoustic_frames,
            sessions.acoustic_pool,
            sessions.text,
            cfg.max_windows_per_run,
        )
        self.index = KeywordIndex(spec.embedding_dim, prefer_gpu=prefer_gpu_index)
        self.whitening = whitening
        self._acoustic_proxies = AcousticProxies(spec, self.encoders, whitening=whitening)
        inv = self.g2p.inventory
        self.cohort: Cohort | None = (
            Cohort.build(lambda seqs: self.embed_phoneme_ids([inv.encode(list(s)) for s in seqs]))
            if cfg.cohort
            else None
        )
        stride = cfg.window_stride_frames
        self.plan = spec.window_plan if stride is None else replace(spec.window_plan, stride=stride)
        self.hop = spec.feature_hop_samples
        self.receptive = spec.feature_receptive_samples
        frame_ms = 1000.0 * self.hop / SAMPLE_RATE
        if cfg.decision not in DECISION_MODES:
            raise ValueError(f"decision {cfg.decision!r}; expected one of {DECISION_MODES}")
        if cfg.persistence < 1:
            raise ValueError(f"persistence must be >= 1 consecutive frames, got {cfg.persistence}")
        hold = (  # peak: never later than peak_max_ms after the first crossing (floor, not round)
            int(cfg.peak_max_ms // frame_ms) if cfg.decision == "peak" else round(cfg.hold_ms / frame_ms)
        )
        self.params = StreamParams(
            hop=self.hop,
            receptive=self.receptive,
            feature_dim=spec.feature_dim,
            frame_dim=spec.frame_dim,
            plan=self.plan,
            hold_frames=max(0, hold),
            decision=cfg.decision,
            persistence=cfg.persistence,
            refractory_frames=max(0, round(cfg.refractory_ms / frame_ms)),
            near_miss_frames=max(1, round(cfg.near_miss_interval_ms / frame_ms)),
            max_overlap=cfg.max_overlap,
            near_miss_margin=cfg.near_miss_margin,
            near_miss_top=cfg.near_miss_top,
            max_step_samples=max(self.hop, int(cfg.max_step_seconds * SAMPLE_RATE)),
            preroll=self.receptive
            if cfg.preroll_ms is None
            else max(0, cfg.preroll_ms) * SAMPLE_RATE // 1000,
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        config: DetectorConfig | None = None,
        device: Device = "auto",
        threads: int = 1,
        g2p: G2P | None = None,
        verify_hashes: bool = True,
    ) -> Spotter:
        spec = load_spec(Path(model_dir), verify_hashes=verify_hashes)
        sessions = load_sessions(spec, Path(model_dir), device=device, threads=threads)
        whitening = None
        if "whitening" in spec.files:  # load_spec checked it against the graphs and the bank
            whitening = read_whitening(spec.file_path(Path(model_dir), "whitening"), spec.embedding_dim)
        return cls(sessions, config, g2p, prefer_gpu_index=device != "cpu", whitening=whitening)

    @property
    def onnx_backend(self) -> str:
        return self.sessions.providers.backend

    @property
    def index_backend(self) -> str:
        return self.index.backend

    @property
    def default_threshold(self) -> float:
        return self.spec.default_threshold

    # -- text side ------------------------------------------------------------------------------------
    def pronounce(self, text: str) -> Pronunciation:
        """Normalize and phonemize keyword text; raises ``G2PError`` with a rule code."""
        return self.g2p(text)

    def embed_phoneme_ids(self, seqs: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        """Phoneme id sequences -> L2-normalized proxies [B, D]."""
        return l2_normalize(self.encoders.text(seqs, batch))

    def keyword_proxies(
        self,
        phonemes: Sequence[Sequence[str]],
        modes: Sequence[ProxyMode] | None = None,
        acoustic: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """The proxy [N, D] of each keyword: the text encoder's embedding of its phonemes (one batch,
        each distinct sequence once), combined per ``modes`` with its ``acoustic`` proxy [D]."""
        modes = modes or ["text"] * len(phonemes)
        acoustic = acoustic or [None] * len(phonemes)
        seqs = list(dict.fromkeys(tuple(p) for p in phonemes))
        inv = self.g2p.inventory
        text = dict(zip(seqs, self.embed_phoneme_ids([inv.encode(list(p)) for p in seqs]), strict=True))
        out = [
            combine_proxies(text[tuple(p)], a, m) for p, m, a in zip(phonemes, modes, acoustic, strict=True)
        ]
        return np.stack(out) if out else np.zeros((0, self.spec.embedding_dim), np.float32)

    def enroll(self, keywords: Sequence[Enrollment], *, replace: bool = False) -> list[KeywordEntry]:
        """Put ``keywords`` into the index, their proxies made by :meth:`keyword_proxies` unless given.

        ``replace``: afterwards the index holds exactly these keywords (every tenant); otherwise they are
        added, or replace the entries with the same tenant and id. Returns the entries, in order.
        Raises ``ValueError`` for a ``tts``/``both`` keyword without its acoustic proxy.
        """
        todo = [k for k in keywords if k.proxy is None]
        made = iter(
            self.keyword_proxies(
                [k.phonemes for k in todo], [k.mode for k in todo], [k.acoustic for k in todo]
            )
        )
        entries = [
            KeywordEntry(
                k.id,
                k.tenant,
                k.text,
                k.phonemes,
                k.threshold,
                next(made) if k.proxy is None else np.asarray(k.proxy, np.float32),
            )
            for k in keywords
        ]
        if replace:
            self.index.replace_all(entries)
        else:
            self.index.upsert(entries)
        return entries

    def acoustic_proxy(self, renditions: Sequence[np.ndarray], mode: str = "tts") -> np.ndarray:
        """Spoken renditions of one keyword (16 kHz float32) -> the L2-normalised acoustic proxy [D]
        of proxy ``mode`` (whitened when the model's whitening covers it; see ``combine_proxies``)."""
        return self._acoustic_proxies.proxy(renditions, mode)

    @property
    def acoustic_proxies(self) -> AcousticProxies:
        return self._acoustic_proxies

    @property
    def acoustic_fingerprint(self) -> str:
        """Identifies the audio side of the model (front-end + acoustic encoder graphs): the bank and a
        stored acoustic proxy are valid only for the model that computed them."""
        return acoustic_fingerprint(self.spec)

    @property
    def proxy_fingerprint(self) -> str:
        """The fingerprint of a whitened acoustic proxy of this model (the acoustic one without whitening)."""
        return fingerprint_of_proxy(self.spec, "whitening" in self.spec.files)

    def proxy_fingerprint_for(self, mode: str) -> str:
        """What a stored acoustic proxy of ``mode`` depends on: the acoustic graphs and, when the
        whitening covers ``mode``, the whitening (:func:`openkws.engine.model_spec.proxy_fingerprint`)."""
        return fingerprint_of_proxy(self.spec, self._acoustic_proxies.whitens(mode))

    # -- streams --------------------------------------------------------------------------------------
    def create_stream(
        self,
        keyword_subset: Iterable[int] | None = None,
        tenant: str = DEFAULT_TENANT,
        debug: bool = False,
        trace: bool = False,
        competition: Competition = "best",
        score_hook: ScoreHook | None = None,
        vad: VadConfig | None = None,
    ) -> KeywordStream:
        """A new stream. ``competition``: ``best`` emits only the best of several keywords firing on
        the same audio, ``all`` each of them; ``score_hook`` sees every evaluated frame's windows;
        ``vad``: voice-activity gating (``openkws.engine.vad``), event times stay in stream time."""
        if competition not in COMPETITIONS:
            raise ValueError(f"competition {competition!r}; expected one of {COMPETITIONS}")
        return KeywordStream(self.params, tenant, keyword_subset, debug, trace, competition, score_hook, vad)

    def decode(self, stream: KeywordStream, step_samples: int | None = None) -> DecodeResult:
        """Decode everything ``stream`` has queued (in steps of ``max_step_seconds``, or of
        ``step_samples``); sherpa-onnx's ``decode_stream``. Raises :class:`StreamStateError` if the
        stream is already being decoded."""
        out = DecodeResult()
        while stream.ready():
            r = self.decode_streams([stream], step_samples)[0]
            out.detections += r.detections
            out.near_misses += r.near_misses
            out.finished = r.finished
        return out

    def decode_streams(
        self, streams: Sequence[KeywordStream], step_samples: int | None = None
    ) -> list[DecodeResult]:
        """One batched step over several streams: front-end, acoustic frames, windows, scores, decisions.

        Each stream consumes up to ``max_step_seconds`` of its queued audio, or ``step_samples`` (16 kHz,
        counted after the VAD gate, so an onset's pre-roll burst is spread over later steps: the
        service's catch-up path); call again while ``stream.ready()``. The events do not depend on
        the cap. Raises :class:`StreamStateError` if a stream is already being decoded.
        """
        claimed: list[KeywordStream] = []
        try:
            for s in streams:
                s.claim()
                claimed.append(s)
            return self._step(streams, step_samples)
        finally:
            for s in claimed:
                s.end()

    def _step(self, streams: Sequence[KeywordStream], step_samples: int | None) -> list[DecodeResult]:
        begun = [s.begin(step_samples) for s in streams]
        fronts = self.features.step([a for a, _ in begun], [m for _, m in begun])
        inputs = [s.accept_features(f) for s, f in zip(streams, fronts, strict=True)]
        new_frames = self.encoders.acoustic_frames(inputs)
        accepted = [s.accept_frames(f) for s, f in zip(streams, new_frames, strict=True)]
        windows = [w for w, _ in accepted]
        emb = self._pool(accepted)
        tenants = {s.tenant: self.index.tenant(s.tenant) for s in streams}  # one snapshot per step
        bounds = np.concatenate([[0], np.cumsum([len(w) for w in windows])]).astype(int)
        requests = [
            ScoreRequest(
                range(bounds[i], bounds[i + 1]),
                tenants[s.tenant],
                s.keyword_view(tenants[s.tenant]),
                self.config.near_miss_margin if s.debug else 0.0,
                s.trace is not None,
                group=id(s),
            )
            for i, s in enumerate(streams)
        ]
        scores = score_windows(emb, requests, self.config.top_k, self.cohort)
        return [
            s.decide(
                windows[i],
                scores[bounds[i] : bounds[i + 1]],
                emb[bounds[i] : bounds[i + 1]],
                tenants[s.tenant],
            )
            for i, s in enumerate(streams)
        ]

    def _pool(self, accepted: list[tuple[list[Window], np.ndarray]]) -> np.ndarray:
        """Embed every window with ``acoustic_pool``, batched by nominal length (masked when clipped)."""
        flat = [(w, local) for windows, local in accepted for w in windows]
        emb = np.zeros((len(flat), self.spec.embedding_dim), np.float32)
        by_group: dict[int, list[int]] = {}
        for k, (w, _) in enumerate(flat):
            by_group.setdefault(w.group, []).append(k)
        for group, members in by_group.items():
            length = group - self.plan.context
            frames = np.zeros((len(members), length, self.spec.frame_dim), np.float32)
            mask = np.zeros((len(members), length), np.float32)
            for r, k in enumerate(members):
                w, local = flat[k]
                frames[r, : w.count] = local[w.first : w.first + w.count]
                mask[r, : w.count] = 1.0
            emb[members] = self.encoders.pool(frames, mask)
        return l2_normalize(emb) if len(flat) else emb

    # -- keyword index helpers ---------------------------------------------------------------------
    def entries_from(
        self, rows: Sequence[tuple[int, str, str, tuple[str, ...], float]]
    ) -> list[KeywordEntry]:
        """(id, tenant, text, phonemes, threshold) rows -> index entries with text proxies (not indexed)."""
        proxies = self.keyword_proxies([r[3] for r in rows])
        return [KeywordEntry(r[0], r[1], r[2], r[3], r[4], proxies[k]) for k, r in enumerate(rows)]

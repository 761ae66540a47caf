"""openkws through its own engine: :class:`openkws.engine.spotter.Spotter`, offline whole-file path.

The stream is fed to one ``KeywordStream`` exactly as the service does (``accept_waveform`` the
whole file, ``input_finished``, ``decode`` until done), so the figures are the service's figures.

Score traces: the benchmark needs every enrolled keyword's cosine at every decision step, while the
engine's own ``trace`` records only the top-1 keyword. The stream's public score hook
(``create_stream(score_hook=...)``) hands over the embeddings of the windows ending at each evaluated
frame; we record ``max over window lengths of cos(window, proxy)`` per keyword, and the engine
decides as usual. The embeddings are the engine's; only the bookkeeping is ours. Time stamps are
the hook's ``time_ms``: the end of the audio that completed the window.

Install: part of this repository (``pip install -e .``); the model directory is ``models/default``
or any directory exported by ``openkws export`` (``openkws.training.export.export_untrained`` for checks).
"""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from bench.detectors.base import Detector, ScoreTrace
from openkws.engine.events import Detection, FrameScores
from openkws.engine.index import KeywordEntry
from openkws.engine.scoring import similarities
from openkws.engine.spotter import Spotter
from openkws.text.tts import ProxyTTS

FIRST_ID = 1


class OpenKWSDetector(Detector):
    name = "openkws"
    open_vocabulary = True
    install = "this repository (pip install -e .); model dir from `openkws export`"

    def __init__(
        self, model_dir: Path | str = "src/openkws/models/default", threads: int = 1, trace: bool = True
    ) -> None:
        self.model_dir = Path(model_dir)
        self.spotter = Spotter.load(self.model_dir, device="cpu", threads=threads)
        try:
            pkg = version("openkws")
        except PackageNotFoundError:
            pkg = "source"
        self.version = f"{pkg} (model {self.spotter.spec.model_version})"
        self.trace = trace
        self.keywords: list[str] = []
        self.ids: dict[str, int] = {}
        self.proxies: np.ndarray | None = None  # [K, D] in enrollment order

    @property
    def default_threshold(self) -> float:
        return float(self.spotter.default_threshold)

    def enroll(self, keywords: list[str], templates: dict[str, list[np.ndarray]] | None = None) -> None:
        sp = self.spotter
        rows = []
        for i, kw in enumerate(keywords):
            p = sp.pronounce(kw)
            rows.append((FIRST_ID + i, "default", p.text, p.phonemes, self.default_threshold))
        entries = self._entries(rows)
        sp.index.replace_all(entries)
        self.keywords = list(keywords)
        self.ids = {kw: FIRST_ID + i for i, kw in enumerate(keywords)}
        self.proxies = np.stack([e.proxy for e in entries]).astype(np.float32) if entries else None

    def add_keyword(self, keyword: str) -> None:
        """Enroll one more keyword the way the service does (G2P, text encoder, index swap)."""
        sp = self.spotter
        p = sp.pronounce(keyword)
        kid = FIRST_ID + len(self.keywords)
        entries = self._entries([(kid, "default", p.text, p.phonemes, self.default_threshold)])
        sp.index.upsert(entries)
        new = np.stack([e.proxy for e in entries]).astype(np.float32)
        self.proxies = new if self.proxies is None else np.concatenate([self.proxies, new])
        self.keywords.append(keyword)
        self.ids[keyword] = kid

    def _entries(self, rows: list[tuple[int, str, str, tuple[str, ...], float]]) -> list[KeywordEntry]:
        """Index entries for (id, tenant, text, phonemes, threshold) rows: the service's text proxies."""
        return self.spotter.entries_from(rows)

    def _run(self, audio: np.ndarray) -> tuple[list[Detection], list[tuple[float, np.ndarray]]]:
        """The engine's detections, and (time s, per-keyword best window cosine) per evaluated frame."""
        rec: list[tuple[float, np.ndarray]] = []
        proxies = self.proxies

        def hook(f: FrameScores) -> None:
            rec.append((f.time_ms / 1000.0, similarities(f.embeddings, proxies).max(axis=0)))  # type: ignore[arg-type]

        stream = self.spotter.create_stream(score_hook=hook if self.trace and proxies is not None else None)
        stream.accept_waveform(16_000, np.asarray(audio, np.float32))
        stream.input_finished()
        return self.spotter.decode(stream).detections, rec

    def detect(self, audio: np.ndarray) -> list[Detection]:
        """The engine's own detections at the enrolled thresholds (no score recording)."""
        trace, self.trace = self.trace, False
        try:
            return self._run(audio)[0]
        finally:
            self.trace = trace

    def process(self, audio: np.ndarray) -> ScoreTrace:
        if not self.keywords:
            raise RuntimeError("enroll keywords first")
        _, rec = self._run(audio)
        times = np.array([t for t, _ in rec], np.float64)
        mat = np.stack([r for _, r in rec]) if rec else np.zeros((0, len(self.keywords)), np.float32)
        return ScoreTrace(times, {kw: mat[:, i] for i, kw in enumerate(self.keywords)})

    def score_clip(self, audio: np.ndarray, keyword: str) -> float:
        if keyword not in self.ids:
            raise KeyError(f"{keyword!r} is not enrolled")
        trace = self.process(audio)
        s = trace.scores[keyword]
        return float(s.max()) if s.size else -1.0


class OpenKWSTTSDetector(OpenKWSDetector):
    """openkws with acoustic keyword proxies: the service's enrollment with ``proxy: "tts"`` (the mean
    acoustic embedding of 8 espeak-ng/flite renditions, :mod:`openkws.engine.acoustic_proxy`)."""

    name = "openkws-tts"
    install = OpenKWSDetector.install + "; espeak-ng and flite (make setup)"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tts = ProxyTTS()
        self.version += ", tts proxies"

    def _entries(self, rows: list[tuple[int, str, str, tuple[str, ...], float]]) -> list[KeywordEntry]:
        sp = self.spotter
        return [
            replace(e, proxy=sp.acoustic_proxy(self.tts.renditions(e.text))) for e in sp.entries_from(rows)
        ]

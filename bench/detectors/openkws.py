"""openkws through its own engine: :class:`openkws.engine.spotter.Spotter`, offline whole-file path.

The stream is fed to one ``KeywordStream`` exactly as the service does (``accept_waveform`` the
whole file, ``input_finished``, ``decode`` until done), so the figures are the service's figures.

Score traces: the benchmark needs every enrolled keyword's cosine at every decision step, while the
engine's own ``trace`` records only the top-1 keyword. :class:`_TracingSpotter` therefore wraps the
engine's scoring step (``Spotter._score_and_decide``, which receives the pooled window embeddings)
and records ``max over window lengths of cos(window, proxy)`` per keyword at each window end frame,
then lets the engine decide as usual. The embeddings are the engine's; only the bookkeeping is ours.
Time stamps are the engine's ``decided_ms``: the end of the audio that completed the window.

Install: part of this repository (``pip install -e .``); the model directory is ``models/default``
or any directory exported by ``openkws export`` (``openkws.training.export.export_untrained`` for checks).
"""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from bench.detectors.base import Detector, ScoreTrace

FIRST_ID = 1


def _tracing_spotter_class():  # built lazily: importing the engine loads onnxruntime/faiss
    from openkws.engine.spotter import Spotter

    class _TracingSpotter(Spotter):
        """A Spotter that also records per-keyword scores of every window it evaluates."""

        recording: dict[int, dict[int, np.ndarray]] | None = None  # stream id -> frame -> [K] scores
        proxies: np.ndarray | None = None  # [K, D] in enrollment order

        def _score_and_decide(self, streams, windows, emb, results, lasts):  # type: ignore[no-untyped-def]
            if self.recording is not None and self.proxies is not None and len(windows):
                sims = emb @ self.proxies.T  # [n_windows, K]
                for k, w in enumerate(windows):
                    per = self.recording.setdefault(id(streams[w.row]), {})
                    prev = per.get(w.frame)
                    per[w.frame] = sims[k] if prev is None else np.maximum(prev, sims[k])
            return super()._score_and_decide(streams, windows, emb, results, lasts)

    return _TracingSpotter


class OpenKWSDetector(Detector):
    name = "openkws"
    open_vocabulary = True
    install = "this repository (pip install -e .); model dir from `openkws export`"

    def __init__(
        self, model_dir: Path | str = "models/default", threads: int = 1, trace: bool = True
    ) -> None:
        cls = _tracing_spotter_class()
        self.model_dir = Path(model_dir)
        self.spotter = cls.load(self.model_dir, device="cpu", threads=threads)
        try:
            pkg = version("openkws")
        except PackageNotFoundError:
            pkg = "source"
        self.version = f"{pkg} (model {self.spotter.spec.model_version})"
        self.trace = trace
        self.keywords: list[str] = []
        self.ids: dict[str, int] = {}

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
        sp.proxies = np.stack([e.proxy for e in entries]).astype(np.float32) if entries else None

    def add_keyword(self, keyword: str) -> None:
        """Enroll one more keyword the way the service does (G2P, text encoder, index swap)."""
        sp = self.spotter
        p = sp.pronounce(keyword)
        kid = FIRST_ID + len(self.keywords)
        sp.index.upsert(self._entries([(kid, "default", p.text, p.phonemes, self.default_threshold)]))
        self.keywords.append(keyword)
        self.ids[keyword] = kid

    def _entries(self, rows: list[tuple[int, str, str, tuple[str, ...], float]]) -> list[object]:
        """Index entries for (id, tenant, text, phonemes, threshold) rows: the service's text proxies."""
        return self.spotter.entries_from(rows)

    def _run(self, audio: np.ndarray) -> tuple[list[object], dict[int, np.ndarray]]:
        sp = self.spotter
        stream = sp.create_stream()
        sp.recording = {} if self.trace else None
        stream.accept_waveform(np.asarray(audio, np.float32))
        stream.input_finished()
        detections = stream.decode().detections
        rec = (sp.recording or {}).get(id(stream), {})
        sp.recording = None
        return detections, rec

    def detect(self, audio: np.ndarray) -> list[object]:
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
        sp = self.spotter
        frames = np.array(sorted(rec), np.int64)
        n = len(audio)
        times = np.minimum(frames * sp.hop + sp.receptive, n) / 16_000.0
        mat = (
            np.stack([rec[f] for f in frames])
            if len(frames)
            else np.zeros((0, len(self.keywords)), np.float32)
        )
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
        from openkws.text.tts import ProxyTTS

        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tts = ProxyTTS()
        self.version += ", tts proxies"

    def _entries(self, rows: list[tuple[int, str, str, tuple[str, ...], float]]) -> list[object]:
        sp = self.spotter
        return [
            replace(e, proxy=sp.acoustic_proxy(self.tts.renditions(e.text))) for e in sp.entries_from(rows)
        ]

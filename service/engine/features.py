"""Frame features from 16 kHz audio, offline (whole clip) or streaming (once per hop).

Feature frame ``t`` is a pure function of ``audio[t*hop : t*hop + receptive]``; so streaming in any
chunk size gives exactly the frames of the whole-file path. Training caches features with this same
code, so train and serve see identical inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..constants import (
    EMBEDDING_HOP_MEL_FRAMES,
    EMBEDDING_WINDOW_MEL_FRAMES,
    MEL_HOP_SAMPLES,
    MEL_WINDOW_SAMPLES,
)
from .model_spec import FRONTENDS

INT16_SCALE = 32767.0  # the bundled mel graph expects int16-range samples
FRAMEWISE_OUTPUT = "log_mel_db"
TOP_DB = 80.0  # the bundled graph's dynamic-range floor


def _session(path: Path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class FeatureExtractor:
    """Stateless front-end: ``features(audio)`` -> [T, F] for float audio in [-1, 1].

    ``frontend`` is ``"logmel"`` (32 log-mel bins every 10 ms) or ``"speech_embedding"``
    (96-dim frozen speech embedding every 80 ms over ~0.8 s).
    """

    def __init__(
        self,
        frontend: str,
        mel_path: Path,
        embedding_path: Path | None = None,
        threads: int = 1,
        mel_session: ort.InferenceSession | None = None,
        embedding_session: ort.InferenceSession | None = None,
    ) -> None:
        if frontend not in FRONTENDS:
            raise ValueError(f"unknown front-end {frontend!r}; expected one of {sorted(FRONTENDS)}")
        self.frontend = frontend
        self.hop, self.receptive, self.dim = FRONTENDS[frontend]
        self.mel = mel_session or _session(mel_path, threads)
        self._framewise = FRAMEWISE_OUTPUT in {o.name for o in self.mel.get_outputs()}
        self.embedding: ort.InferenceSession | None = None
        if frontend == "speech_embedding":
            if embedding_session is None and embedding_path is None:
                raise ValueError("the speech_embedding front-end needs the speech-embedding ONNX file")
            self.embedding = embedding_session or _session(embedding_path, threads)  # type: ignore[arg-type]

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.receptive else (num_samples - self.receptive) // self.hop + 1

    def mel_frames(self, audio: np.ndarray) -> np.ndarray:
        """[N] float audio -> [T, 32] scaled log-mel (openWakeWord's ``x/10 + 2``), frame-local."""
        n = (len(audio) - MEL_WINDOW_SAMPLES) // MEL_HOP_SAMPLES + 1 if len(audio) >= MEL_WINDOW_SAMPLES else 0
        if n <= 0:
            return np.zeros((0, 32), np.float32)
        x = (audio[: (n - 1) * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES] * INT16_SCALE).astype(np.float32)
        # The bundled graph floors its log-mel 80 dB below the loudest value of its *whole input*
        # (ReduceMax over all frames), so one run over many frames is not frame-local. Exported
        # models ship a copy with an extra ``log_mel_db`` output (pre-floor); the floor is then
        # applied per frame here, equal to running the graph on each 512-sample frame alone.
        if self._framewise:
            db = self.mel.run([FRAMEWISE_OUTPUT], {"input": x[None, :]})[0][0, 0, :n]
            mel = np.maximum(db, db.max(axis=-1, keepdims=True) - TOP_DB)
        else:  # plain graph: one run per frame (slow but exact)
            mel = np.empty((n, 32), np.float32)
            for t in range(n):
                frame = x[None, t * MEL_HOP_SAMPLES : t * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES]
                mel[t] = self.mel.run(None, {"input": frame})[0][0, 0, 0]
        return np.ascontiguousarray(mel / 10.0 + 2.0, dtype=np.float32)

    def embed_mel(self, mel: np.ndarray) -> np.ndarray:
        """[Tm, 32] mel -> [Te, 96] speech embeddings, Te = (Tm - 76) // 8 + 1."""
        assert self.embedding is not None
        if len(mel) < EMBEDDING_WINDOW_MEL_FRAMES:
            return np.zeros((0, self.dim), np.float32)
        te = (len(mel) - EMBEDDING_WINDOW_MEL_FRAMES) // EMBEDDING_HOP_MEL_FRAMES + 1
        idx = np.arange(te)[:, None] * EMBEDDING_HOP_MEL_FRAMES + np.arange(EMBEDDING_WINDOW_MEL_FRAMES)[None, :]
        windows = mel[idx][..., None].astype(np.float32)  # [Te, 76, 32, 1]
        out = self.embedding.run(None, {"input_1": windows})[0]
        return np.ascontiguousarray(out.reshape(te, self.dim), dtype=np.float32)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Whole-clip features [T, F]; T == ``num_frames(len(audio))``."""
        audio = np.asarray(audio, dtype=np.float32)
        mel = self.mel_frames(audio)
        if self.frontend == "logmel":
            return mel
        return self.embed_mel(mel)

    def stream(self) -> FeatureStream:
        return FeatureStream(self)


class FeatureStream:
    """Per-stream incremental front-end state: only the audio/mel tail it still needs.

    Each call to ``accept`` returns the new feature frames the audio completes, computing every mel
    frame and every embedding exactly once.
    """

    def __init__(self, fx: FeatureExtractor) -> None:
        self.fx = fx
        self._audio = np.zeros(0, np.float32)  # samples not yet fully consumed by mel frames
        self._mel = np.zeros((0, 32), np.float32)  # mel frames not yet consumed by embeddings
        self.frames_emitted = 0

    def accept(self, audio: np.ndarray) -> np.ndarray:
        self._audio = np.concatenate([self._audio, np.asarray(audio, np.float32)])
        mel = self.fx.mel_frames(self._audio)
        if len(mel):
            self._audio = self._audio[len(mel) * MEL_HOP_SAMPLES :]
        if self.fx.frontend == "logmel":
            self.frames_emitted += len(mel)
            return mel
        self._mel = np.concatenate([self._mel, mel]) if len(mel) else self._mel
        emb = self.fx.embed_mel(self._mel)
        if len(emb):
            self._mel = self._mel[len(emb) * EMBEDDING_HOP_MEL_FRAMES :]
        self.frames_emitted += len(emb)
        return emb

"""Every ONNX call of the engine: the frozen front-end (mel + speech embedding), the acoustic
encoder (``acoustic_frames``, ``acoustic_pool``) and the text encoder, each batched over rows.

The front-end runs inside the micro-batch: :meth:`FrontEnd.step` takes the new audio of many
streams and makes one mel call per group of equal frame count and one speech-embedding call for all
of them. Feature frame ``t`` is a pure function of ``audio[t*hop : t*hop + receptive]``, so streaming
in any chunk size, and batching with any other streams, gives exactly the frames of one offline run.
Training caches features with this same code (:class:`FeatureExtractor`), so train and serve see
identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from openkws.constants import (
    EMBEDDING_HOP_MEL_FRAMES,
    EMBEDDING_WINDOW_MEL_FRAMES,
    MEL_BINS,
    MEL_HOP_SAMPLES,
    MEL_WINDOW_SAMPLES,
    PCM_SCALE,
)
from openkws.engine.model_spec import FRAMEWISE_MEL_OUTPUT, FRONTENDS, GRAPHS, MEL_TOP_DB, ModelSpec

FRAMES_BATCH_VALUES = 4096  # acoustic_frames: rows per call x frames per row stays under this
EMBEDDING_BATCH = 2048  # speech-embedding windows per call


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def mel_frame_count(num_samples: int) -> int:
    return (
        (num_samples - MEL_WINDOW_SAMPLES) // MEL_HOP_SAMPLES + 1 if num_samples >= MEL_WINDOW_SAMPLES else 0
    )


@dataclass(frozen=True)
class FrontEndStep:
    """What the front-end made of one stream's audio: new features and the tails still unconsumed."""

    features: np.ndarray  # [T, F]
    audio_tail: np.ndarray  # samples not yet covered by a complete mel frame
    mel_tail: np.ndarray  # mel frames not yet consumed by an embedding (speech_embedding only)


class FeatureExtractor:
    """The frozen front-end: float audio in [-1, 1] -> [T, F] features, batched over streams.

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
        self.mel = mel_session or cpu_session(mel_path, threads)
        self._framewise = FRAMEWISE_MEL_OUTPUT in {o.name for o in self.mel.get_outputs()}
        self.embedding: ort.InferenceSession | None = None
        if frontend == "speech_embedding":
            if embedding_session is None:
                if embedding_path is None:
                    raise ValueError("the speech_embedding front-end needs the speech-embedding ONNX file")
                embedding_session = cpu_session(embedding_path, threads)
            self.embedding = embedding_session

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.receptive else (num_samples - self.receptive) // self.hop + 1

    # -- mel --------------------------------------------------------------------------------------
    def mel_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """[N_i] audio per row -> [T_i, 32] scaled log-mel (openWakeWord's ``x/10 + 2``), frame-local.

        Rows with the same frame count share one ONNX call.
        """
        counts = [mel_frame_count(len(a)) for a in audios]
        out = [np.zeros((0, MEL_BINS), np.float32) for _ in audios]
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(counts):
            if n > 0:
                groups.setdefault(n, []).append(i)
        for n, rows in groups.items():
            used = (n - 1) * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES
            x = np.stack([audios[i][:used] for i in rows]).astype(np.float32) * np.float32(PCM_SCALE)
            for r, mel in zip(rows, self._mel_rows(x, n), strict=True):
                out[r] = np.ascontiguousarray(mel / 10.0 + 2.0, dtype=np.float32)
        return out

    def _mel_rows(self, x: np.ndarray, n: int) -> np.ndarray:
        # The bundled graph floors its log-mel 80 dB below the loudest value of its *whole input*
        # (ReduceMax over every row and frame), so one run over many frames is not frame-local.
        # Exported models ship a copy with the pre-floor output; the floor is then applied per
        # frame here, equal to running the graph on each 512-sample frame alone.
        if self._framewise:
            db = self.mel.run([FRAMEWISE_MEL_OUTPUT], GRAPHS["melspectrogram"].feed(x))[0][:, 0, :n]
            return np.asarray(np.maximum(db, db.max(axis=-1, keepdims=True) - MEL_TOP_DB), np.float32)
        mel = np.empty((len(x), n, MEL_BINS), np.float32)  # plain graph: one run per frame (slow, exact)
        for r in range(len(x)):
            for t in range(n):
                frame = x[r : r + 1, t * MEL_HOP_SAMPLES : t * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES]
                mel[r, t] = GRAPHS["melspectrogram"].run(self.mel, frame)[0, 0, 0]
        return mel

    # -- speech embedding -------------------------------------------------------------------------
    def embed_batch(self, mels: Sequence[np.ndarray]) -> list[np.ndarray]:
        """[Tm_i, 32] mel per row -> [Te_i, 96] speech embeddings, Te = (Tm - 76) // 8 + 1; one call."""
        if self.embedding is None:
            raise RuntimeError(f"front-end {self.frontend!r} has no speech-embedding graph")
        counts = [
            max(0, (len(m) - EMBEDDING_WINDOW_MEL_FRAMES) // EMBEDDING_HOP_MEL_FRAMES + 1) for m in mels
        ]
        offsets = np.arange(EMBEDDING_WINDOW_MEL_FRAMES)[None, :]
        windows = [
            m[np.arange(te)[:, None] * EMBEDDING_HOP_MEL_FRAMES + offsets]
            for m, te in zip(mels, counts, strict=True)
            if te
        ]
        if not windows:
            return [np.zeros((0, self.dim), np.float32) for _ in mels]
        stacked = np.concatenate(windows)[..., None].astype(np.float32)  # [sum Te, 76, 32, 1]
        graph, session = GRAPHS["speech_embedding"], self.embedding
        parts = [
            graph.run(session, stacked[j : j + EMBEDDING_BATCH])
            for j in range(0, len(stacked), EMBEDDING_BATCH)
        ]
        flat = np.concatenate(parts).reshape(len(stacked), self.dim).astype(np.float32)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [np.ascontiguousarray(flat[bounds[i] : bounds[i + 1]]) for i in range(len(mels))]

    # -- whole clips and streams --------------------------------------------------------------------
    def features(self, audio: np.ndarray) -> np.ndarray:
        """Whole-clip features [T, F]; T == ``num_frames(len(audio))``."""
        mel = self.mel_batch([np.asarray(audio, np.float32)])
        return mel[0] if self.frontend == "logmel" else self.embed_batch(mel)[0]

    def step(self, audios: Sequence[np.ndarray], mel_tails: Sequence[np.ndarray]) -> list[FrontEndStep]:
        """One streaming step for many streams: each row's audio (its unconsumed tail + new audio)
        and mel tail -> its new features and new tails. Every mel frame and embedding is computed once."""
        mels = self.mel_batch(audios)
        audio_tails = [a[len(m) * MEL_HOP_SAMPLES :] for a, m in zip(audios, mels, strict=True)]
        if self.frontend == "logmel":
            return [FrontEndStep(m, t, m[:0]) for m, t in zip(mels, audio_tails, strict=True)]
        joined = [np.concatenate([old, m]) if len(m) else old for old, m in zip(mel_tails, mels, strict=True)]
        embs = self.embed_batch(joined)
        return [
            FrontEndStep(e, t, j[len(e) * EMBEDDING_HOP_MEL_FRAMES :])
            for e, t, j in zip(embs, audio_tails, joined, strict=True)
        ]


class Encoders:
    """The model's ONNX sessions behind batched calls (front-end, acoustic encoder, text encoder)."""

    def __init__(
        self,
        spec: ModelSpec,
        frontend: FeatureExtractor,
        frames: ort.InferenceSession,
        pool: ort.InferenceSession,
        text: ort.InferenceSession,
        max_pool_batch: int = 512,
    ) -> None:
        self.spec = spec
        self.frontend = frontend
        self._frames = frames
        self._pool = pool
        self._text = text
        self.max_pool_batch = max_pool_batch

    def acoustic_frames(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Feature rows [L_i, F] -> acoustic frames [L_i - context, C]; rows of equal length share a call."""
        ctx, c = self.spec.acoustic_context_frames, self.spec.frame_dim
        out = [np.zeros((0, c), np.float32) for _ in inputs]
        by_len: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            if len(x) > ctx:
                by_len.setdefault(len(x), []).append(i)
        for length, rows in by_len.items():
            cap = max(1, FRAMES_BATCH_VALUES // length)
            for j in range(0, len(rows), cap):
                part = rows[j : j + cap]
                y = GRAPHS["acoustic_frames"].run(
                    self._frames, np.stack([inputs[i] for i in part]).astype(np.float32)
                )
                for r, i in enumerate(part):
                    out[i] = y[r]
        return out

    def pool(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Masked frames [B, T, C] -> window embeddings [B, D] (in chunks of ``max_pool_batch``)."""
        b, graph = self.max_pool_batch, GRAPHS["acoustic_pool"]
        parts = [graph.run(self._pool, frames[j : j + b], mask[j : j + b]) for j in range(0, len(frames), b)]
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.embedding_dim), np.float32)

    def text(self, seqs: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        """Phoneme id sequences -> text proxies [B, D] (not re-normalised)."""
        out = []
        for i in range(0, len(seqs), batch):
            chunk = seqs[i : i + batch]
            lengths = np.array([len(s) for s in chunk], np.int64)
            ids = np.zeros((len(chunk), int(lengths.max())), np.int64)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = s
            out.append(GRAPHS["text"].run(self._text, ids, lengths))
        return np.concatenate(out) if out else np.zeros((0, self.spec.embedding_dim), np.float32)

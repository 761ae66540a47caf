"""EfficientWord-Net 1.0.5: few-shot, audio-enrolled, ResNet-50 embeddings scored by cosine.

Install: ``pip install --no-deps EfficientWord-Net==1.0.5``. Its declared dependencies pull
``pyaudio`` (a microphone binding that needs PortAudio headers), ``twine``, ``requests`` and
``typer``; scoring needs only numpy and onnxruntime, which openkws already depends on, so the
package is installed without them. The wheel carries the ONNX model (fp32, 88 MB; the package's
own loader always picks fp32). Nothing is downloaded.

Its ``engine.HotwordDetector`` imports ``pyaudio`` at module level and gates on wall-clock
"relaxation time", which is meaningless offline. This adapter therefore uses the model backend
(``audio_processing.Resnet50_Arc_loss``) exactly as the engine does: one embedding per 1.5 s
window, score = ``max((cos(window, template) + 1) / 2)`` over the keyword's enrolled templates.
``engine.py`` is never imported, so no ``pyaudio`` (not even a stub) is needed anywhere.

Enrollment: 3-4 clips per keyword, each padded/cropped to 1.5 s by the package's own
``fixPaddingIssues`` (seeded here, since it places the clip at random).
"""

from __future__ import annotations

import random
import types
from importlib.metadata import version

import numpy as np

from bench.detectors.base import Detector, ScoreTrace

WINDOW_S = 1.5
DEFAULT_HOP_S = 0.5  # the package's mic demo slides by 0.75 s; 0.5 s keeps a <=1 s word inside the hit window


class EfficientWordDetector(Detector):
    name = "efficientword"
    open_vocabulary = True
    needs_templates = True
    install = (
        "pip install --no-deps EfficientWord-Net==1.0.5 (ONNX model in the wheel; needs numpy + onnxruntime)"
    )

    def __init__(self, hop_s: float = DEFAULT_HOP_S, threads: int = 1, seed: int = 0) -> None:
        import eff_word_net.audio_processing as ap
        import onnxruntime as ort

        self.version = version("EfficientWord-Net")
        self.hop_s = hop_s
        self.seed = seed
        # The package's own constructor, with its session limited to `threads` threads (it lets
        # onnxruntime pick): its module-level `rt` is swapped for the duration of the call only.
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        shim = types.SimpleNamespace(InferenceSession=ort.InferenceSession, SessionOptions=lambda: so)
        real_rt = ap.rt
        ap.rt = shim
        try:
            model = ap.Resnet50_Arc_loss()
        finally:
            ap.rt = real_rt
        self.model = model
        self.window = model.window_frames
        self.hop = int(round(hop_s * 16_000))
        self.keywords: list[str] = []
        self._templates = np.zeros((0, 2048), np.float32)
        self._owner = np.zeros(0, np.int64)

    def embed(self, clip: np.ndarray) -> np.ndarray:
        """One enrollment clip -> [2048] embedding (padded/cropped to 1.5 s as the package does)."""
        random.seed(self.seed)  # fixPaddingIssues places the clip at a random offset
        x = self.model.fixPaddingIssues(np.asarray(clip, np.float64))
        return np.asarray(self.model.audioToVector(np.asarray(x, np.float32)), np.float32).reshape(-1)

    def enroll(self, keywords: list[str], templates: dict[str, list[np.ndarray]] | None = None) -> None:
        if templates is None or any(len(templates.get(k, [])) < 1 for k in keywords):
            raise ValueError("EfficientWord-Net is audio-enrolled: give 3-4 template clips per keyword")
        self.enroll_embeddings({k: np.stack([self.embed(c) for c in templates[k]]) for k in keywords})

    def enroll_embeddings(self, embeddings: dict[str, np.ndarray]) -> None:
        """Enroll precomputed template embeddings (``[n, 2048]`` per keyword)."""
        self.keywords = list(embeddings)
        self._templates = np.concatenate([embeddings[k] for k in self.keywords]).astype(np.float32)
        self._owner = np.concatenate([np.full(len(embeddings[k]), i) for i, k in enumerate(self.keywords)])

    def window_embeddings(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slide 1.5 s windows by ``hop_s`` -> (window end times [W], embeddings [W, 2048])."""
        audio = np.asarray(audio, np.float32)
        if len(audio) < self.window:
            audio = np.concatenate([audio, np.zeros(self.window - len(audio), np.float32)])
        starts = range(0, len(audio) - self.window + 1, self.hop)
        embs = np.stack(
            [
                np.asarray(self.model.audioToVector(audio[s : s + self.window]), np.float32).reshape(-1)
                for s in starts
            ]
        )
        ends = (np.asarray(list(starts)) + self.window) / 16_000
        return ends, embs

    def scores_from_embeddings(self, embs: np.ndarray) -> dict[str, np.ndarray]:
        conf = (embs @ self._templates.T + 1.0) / 2.0  # [W, n_templates], the package's confidence
        out = {}
        for i, k in enumerate(self.keywords):
            out[k] = conf[:, self._owner == i].max(axis=1).astype(np.float32)
        return out

    def process(self, audio: np.ndarray) -> ScoreTrace:
        ends, embs = self.window_embeddings(audio)
        return ScoreTrace(ends, self.scores_from_embeddings(embs))

    def score_clip(self, audio: np.ndarray, keyword: str) -> float:
        if keyword not in self.keywords:
            raise KeyError(f"{keyword!r} is not enrolled")
        ends, embs = self.window_embeddings(audio)
        return float(self.scores_from_embeddings(embs)[keyword].max())

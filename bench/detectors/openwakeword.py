"""openWakeWord through ``pyopen-wakeword`` 1.1.0: five bundled per-word models, score per 80 ms.

Install: ``pip install pyopen-wakeword==1.1.0`` (the ``bench`` extra). The wheel carries the
TFLite runtime (``libtensorflowlite_c.so``), the mel-spectrogram and speech-embedding feature
models, and alexa / hey_jarvis / hey_mycroft / hey_rhasspy / okay_nabu. Nothing is downloaded.

Closed vocabulary: a keyword is one of the bundled model names, or their spoken form
("hey jarvis" -> ``hey_jarvis``). A new word needs a newly trained model (see :data:`TRAINING_COST`).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from bench.detectors.base import Detector, ScoreTrace

CHUNK_SAMPLES = 1280  # the library's native step: 80 ms at 16 kHz
CHUNK_S = CHUNK_SAMPLES / 16_000
SPOKEN = {
    "alexa": "alexa",
    "hey jarvis": "hey_jarvis",
    "hey mycroft": "hey_mycroft",
    "hey rhasspy": "hey_rhasspy",
    "okay nabu": "okay_nabu",
}
TRAINING_COST = (
    "a new word needs a newly trained model; the openWakeWord README (update of 2023/10/11) documents "
    "an example Google Colab notebook that trains a basic wake word model in under 1 hour "
    "(documented figure, not run here)"
)


class OpenWakeWordDetector(Detector):
    name = "openwakeword"
    open_vocabulary = False
    install = (
        "pip install pyopen-wakeword==1.1.0 (TFLite runtime + feature models + 5 word models in the wheel)"
    )

    def __init__(self, copies: int = 1, prefill: bool = True) -> None:
        """``copies`` > 1 loads each model that many times (cost of N per-word models; speed study only).

        ``prefill``: start each stream the library's way, with its feature buffer pre-filled with 8 s of
        silence that are processed first. The speed protocol turns it off to time the steady state.
        """
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self.version = version("pyopen-wakeword")
        self._Model, self._OWW, self._Features = Model, OpenWakeWord, OpenWakeWordFeatures
        self.copies = copies
        self.prefill = prefill
        self.features = OpenWakeWordFeatures.from_builtin()
        self.models: dict[str, list[object]] = {}

    @staticmethod
    def model_id(keyword: str) -> str | None:
        k = keyword.strip().lower()
        return SPOKEN.get(k, k if k in SPOKEN.values() else None)

    def supports(self, keyword: str) -> bool:
        return self.model_id(keyword) is not None

    def enroll(self, keywords: list[str], templates: dict[str, list[np.ndarray]] | None = None) -> None:
        unknown = [k for k in keywords if not self.supports(k)]
        if unknown:
            raise ValueError(f"openWakeWord has no model for {unknown}; bundled: {sorted(SPOKEN)}")
        for m in self.models.values():
            for inst in m:
                inst.close()  # type: ignore[attr-defined]
        self.models = {
            k: [self._OWW.from_builtin(self._Model(self.model_id(k))) for _ in range(self.copies)]
            for k in keywords
        }

    def process(self, audio: np.ndarray) -> ScoreTrace:
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        self.features.reset()
        if not self.prefill:
            self.features.new_audio_samples = 0
        for insts in self.models.values():
            for inst in insts:
                inst.reset()  # type: ignore[attr-defined]
        times: list[float] = []
        scores: dict[str, list[float]] = {k: [] for k in self.models}
        n = len(pcm) // CHUNK_SAMPLES * CHUNK_SAMPLES
        for i in range(0, n, CHUNK_SAMPLES):
            end_s = (i + CHUNK_SAMPLES) / 16_000
            embs = list(self.features.process_streaming(pcm[i : i + CHUNK_SAMPLES].tobytes()))
            # the feature buffer starts pre-filled with 8 s of silence, so the first chunk yields
            # many embeddings: each is one 80 ms step back from the newest
            step_probs: dict[str, list[float]] = {k: [] for k in self.models}
            for emb in embs:
                for k, insts in self.models.items():
                    for c, inst in enumerate(insts):
                        probs = list(inst.process_streaming(emb))  # type: ignore[attr-defined]
                        if c == 0:
                            step_probs[k].extend(probs)
            m = min((len(v) for v in step_probs.values()), default=0)
            for q in range(m):
                t = end_s - (m - 1 - q) * CHUNK_S
                if t <= 0:  # a step over the library's silent pre-fill, not over the stream
                    continue
                times.append(t)
                for k in self.models:
                    scores[k].append(step_probs[k][len(step_probs[k]) - m + q])
        return ScoreTrace(np.asarray(times), {k: np.asarray(v, np.float32) for k, v in scores.items()})

    def close(self) -> None:
        for insts in self.models.values():
            for inst in insts:
                inst.close()  # type: ignore[attr-defined]
        self.models = {}
        self.features.close()

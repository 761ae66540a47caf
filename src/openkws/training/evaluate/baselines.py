"""Untrained baselines from TTS templates, and the TTS voices evaluation uses for templates and
acoustic proxies.

* ``tts_template_speech_embedding``: cosine between mean+max-pooled frozen speech embeddings of the
  clip and of each template; a pair's score is the best template.
* ``tts_template_dtw_logmel``: minus the DTW distance between mean-normalised log-mel sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from openkws.engine.windows import speech_span
from openkws.text.tts import PROXY_VOICES, ProxyTTS
from openkws.training.data.tts import list_voices, synthesize
from openkws.training.evaluate.pairs import EvalClip, Pair, load_eval_audio, pad_eval
from openkws.training.nets.frontend import feature_extractor

TEMPLATE_VOICES = 8
# Plain, intelligible training voices over every engine (no whisper/novelty variants).
PREFERRED_TEMPLATE_VOICES = (
    "espeak:en-us+m3", "espeak:en-us+f2", "flite:slt", "festival:kal", "espeak:en-gb+m1", "flite:kal",
    "festival:slt", "espeak:en-us+f4", "flite:rms", "festival:ked",
)  # fmt: skip


def template_voices(n: int = TEMPLATE_VOICES) -> list[str]:
    """``n`` training voices spread over engines/accents (the data layer's voice registry)."""
    voices = [v for v in list_voices() if getattr(v, "split", "train") == "train"]
    ids = [getattr(v, "id", None) or getattr(v, "name", str(v)) for v in voices]
    if not ids:  # no registry entries on this machine: the service's acoustic-proxy voices
        return list(PROXY_VOICES[:n])
    preferred = [v for v in PREFERRED_TEMPLATE_VOICES if v in ids]
    if len(preferred) >= n:
        return preferred[:n]
    by_engine: dict[str, list[str]] = {}
    for i in ids:
        by_engine.setdefault(i.split(":")[0], []).append(i)
    out: list[str] = []
    while len(out) < n and any(by_engine.values()):
        for eng in sorted(by_engine):
            if by_engine[eng] and len(out) < n:
                lst = by_engine[eng]
                out.append(lst.pop(len(lst) // 2))
    return out


def synthesize_any(text: str, voice: str, seed: int = 0) -> np.ndarray:
    """The data layer's TTS for its voices; the service's (espeak-ng, flite) for the proxy voices."""
    if voice in PROXY_VOICES:
        return ProxyTTS().synthesize(text, voice, seed=seed)
    return synthesize(text, voice, seed=seed)


def _mean_max(feats: np.ndarray) -> np.ndarray:
    v = np.concatenate([feats.mean(axis=0), feats.max(axis=0)])
    return v / max(1e-9, float(np.linalg.norm(v)))


def _trim(wave: np.ndarray) -> np.ndarray:
    s, e = speech_span(wave)
    return wave[s:e]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Path-length-normalised DTW with cosine frame distance, vectorised over anti-diagonals.

    >>> x = np.random.default_rng(0).normal(size=(12, 4))
    >>> dtw_distance(x, x) < 1e-9, dtw_distance(x, np.repeat(x, 2, axis=0)) < 1e-9
    (True, True)
    """
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-9)
    cost = np.clip(1.0 - an @ bn.T, 0.0, 2.0)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1))
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):  # anti-diagonal i + j = k (1-based)
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        cands = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        lens = np.stack([steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1]])
        best = np.argmin(cands, axis=0)
        acc[i, j] = cands[best, np.arange(len(i))] + cost[i - 1, j - 1]
        steps[i, j] = lens[best, np.arange(len(i))] + 1
    return float(acc[n, m] / steps[n, m])


class TemplateBaselines:
    """Untrained baselines from TTS templates (``TEMPLATE_VOICES`` voices per keyword).

    * ``speech_embedding``: cosine between mean+max-pooled frozen speech embeddings of the clip and
      of each template; a pair's score is the best template.
    * ``dtw``: minus the DTW distance between mean-normalised log-mel sequences (speech span only).
    """

    def __init__(self, voices: Sequence[str] | None = None, threads: int = 1) -> None:
        self.voices = list(voices or template_voices())
        self.emb_fx = feature_extractor("speech_embedding", threads)
        self.mel_fx = feature_extractor("logmel", threads)
        self._templates: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}

    def _clip_repr(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb = self.emb_fx.features(pad_eval(wave))
        mel = self.mel_fx.features(_trim(wave))
        mel = mel - mel.mean(axis=0, keepdims=True)
        return _mean_max(emb), mel[::2]  # DTW at 50 frames/s

    def templates(self, text: str) -> tuple[np.ndarray, list[np.ndarray]]:
        if text not in self._templates:
            reps = [self._clip_repr(synthesize_any(text, v, seed=k)) for k, v in enumerate(self.voices)]
            self._templates[text] = (np.stack([r[0] for r in reps]), [r[1] for r in reps])
        return self._templates[text]

    def score(
        self, clips: Sequence[EvalClip], pairs: Sequence[Pair], progress: bool = True
    ) -> dict[str, np.ndarray]:
        by_clip: dict[int, list[int]] = {}
        for k, p in enumerate(pairs):
            by_clip.setdefault(p.clip, []).append(k)
        emb_s = np.zeros(len(pairs))
        dtw_s = np.zeros(len(pairs))
        for c in tqdm(sorted(by_clip), desc="baselines", unit="clip", disable=not progress):
            vec, mel = self._clip_repr(load_eval_audio(clips[c]))
            for k in by_clip[c]:
                tv, tm = self.templates(pairs[k].text)
                emb_s[k] = float((tv @ vec).max())
                dtw_s[k] = -min(dtw_distance(mel, t) for t in tm)
        return {"tts_template_speech_embedding": emb_s, "tts_template_dtw_logmel": dtw_s}

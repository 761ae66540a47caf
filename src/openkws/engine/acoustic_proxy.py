"""Acoustic keyword proxies: a keyword's proxy taken from the acoustic encoder's embeddings of
spoken renditions of it (TTS), instead of from the text encoder.

Each rendition is padded with :data:`RENDITION_PAD_S` of silence on both sides (a stream has audio
around a keyword), and embedded through the one window training would cut for it: the keyword
window (:func:`openkws.engine.windows.keyword_window`) centred on the detected speech span. The
proxy is the L2-normalised mean of the renditions' embeddings. On real speech this proxy separates
confusable keywords better than the text proxy (docs/RESULTS.md, "Acoustic proxies from TTS").

Proxy modes (:data:`PROXY_MODES`): ``text`` (text encoder), ``tts`` (acoustic proxy) and ``both``
(the L2-normalised sum of the two; :func:`combine_proxies`).

Whitened proxies (:mod:`openkws.engine.whitening`): when the model directory carries a whitening,
the acoustic proxy of the modes it names is ``normalize(S^-1 (mu_tts - mu_bg))`` instead, over a
rendition set that also holds each rendition resampled by :data:`TEMPO_FACTORS` (faster and slower
speech); :meth:`AcousticProxies.proxy` and :func:`combine_proxies` take the mode.

The pair evaluation (:mod:`openkws.training.evaluate`) enrolls through the same
:meth:`openkws.engine.spotter.Spotter.acoustic_proxy`, so its figures describe what the service
enrolls for the same renditions (the service synthesizes with espeak-ng and flite,
:data:`openkws.text.tts.PROXY_VOICES`; the evaluation's default voices also use festival).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from openkws.engine.encoders import Encoders
from openkws.engine.model_spec import ModelSpec
from openkws.engine.whitening import Whitening
from openkws.engine.windows import crop_window, keyword_window, speech_span

RENDITION_PAD_S = 0.5  # silence added on both sides of a rendition (the evaluation's EVAL_PAD_S)
# Resampling factors of the whitened rendition set (the issue-26 experiment's 0.9 / 1.0 / 1.1):
# speed and pitch together, as a faster or slower speaker.
TEMPO_FACTORS = (0.9, 1.0, 1.1)

ProxyMode = Literal["text", "tts", "both"]
PROXY_MODES: tuple[ProxyMode, ...] = ("text", "tts", "both")


@dataclass(frozen=True)
class AcousticProxies:
    """Acoustic proxies with one model's encoders (front-end, ``acoustic_frames``, ``acoustic_pool``)."""

    spec: ModelSpec
    encoders: Encoders
    pad_s: float = RENDITION_PAD_S
    whitening: Whitening | None = None

    def rendition_embedding(self, wave: np.ndarray) -> np.ndarray:
        """One spoken keyword [N] (16 kHz float32) -> the acoustic embedding [D] of its keyword window."""
        spec = self.spec
        wave = np.asarray(wave, np.float32).reshape(-1)
        if len(wave) == 0:
            raise ValueError("empty rendition: no audio to embed")
        pad = int(self.pad_s * spec.sample_rate)
        s, e = speech_span(wave)
        span = (s + pad, e + pad)
        feats = self.encoders.frontend.features(np.pad(wave, (pad, pad)))
        w = min(keyword_window(span, spec.frontend, tuple(spec.windows_frames)), len(feats))
        if w <= spec.acoustic_context_frames:
            raise ValueError(
                f"rendition too short: {len(feats)} feature frames, the encoder needs more than "
                f"{spec.acoustic_context_frames}"
            )
        start = crop_window(len(feats), span, w, spec.frontend, None)
        y = self.encoders.acoustic_frames([feats[start : start + w]])[0]
        return np.asarray(self.encoders.pool(y[None], np.ones((1, len(y)), np.float32))[0], np.float32)

    def __call__(self, renditions: Sequence[np.ndarray]) -> np.ndarray:
        """Renditions of one keyword -> its L2-normalised acoustic proxy [D] (mean of the embeddings)."""
        m = self.mean_embedding(renditions)
        return np.asarray(m / max(1e-9, float(np.linalg.norm(m))), np.float32)

    def mean_embedding(
        self, renditions: Sequence[np.ndarray], tempos: Sequence[float] = (1.0,)
    ) -> np.ndarray:
        """Renditions -> the mean [D] (not normalised) of their embeddings, each at every tempo factor."""
        if not renditions:
            raise ValueError("no renditions: an acoustic proxy needs at least one")
        return np.asarray(np.mean(self.embeddings(renditions, tempos), axis=0), np.float32)

    def embeddings(self, renditions: Sequence[np.ndarray], tempos: Sequence[float]) -> np.ndarray:
        """Embeddings [len(renditions) * len(tempos), D], rendition-major."""
        return np.stack([self.rendition_embedding(tempo_variant(w, f)) for w in renditions for f in tempos])

    def whitens(self, mode: str) -> bool:
        """Whether ``mode`` enrolls the whitened proxy with this model directory."""
        return self.whitening is not None and mode in self.whitening.modes

    def proxy(self, renditions: Sequence[np.ndarray], mode: str = "tts") -> np.ndarray:
        """The acoustic part of a ``mode`` proxy [D]: whitened (over the tempo set) when the model's
        whitening covers ``mode``, else the plain normalised mean. :func:`combine_proxies` finishes it."""
        if not self.whitens(mode):
            return self(renditions)
        assert self.whitening is not None
        return self.whitening.proxy(self.mean_embedding(renditions, TEMPO_FACTORS))


def tempo_variant(wave: np.ndarray, factor: float) -> np.ndarray:
    """``wave`` [N] played ``factor`` times faster (linear resampling; pitch moves with it).

    Example:
        >>> len(tempo_variant(np.zeros(1000, np.float32), 1.1)), len(tempo_variant(np.ones(10), 1.0))
        (909, 10)
    """
    if not factor > 0:
        raise ValueError(f"tempo factor must be > 0, got {factor}")
    x = np.asarray(wave, np.float32).reshape(-1)
    if factor == 1.0 or len(x) < 2:
        return x
    n = max(2, int(round(len(x) / factor)))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


def combine_proxies(text: np.ndarray | None, acoustic: np.ndarray | None, mode: str) -> np.ndarray:
    """Text and/or acoustic proxies [..., D] (L2-normalised) -> the proxies of ``mode`` [..., D].

    Example:
        >>> t, a = np.array([1.0, 0.0]), np.array([0.0, 1.0])
        >>> combine_proxies(t, a, "both").astype(float).round(3).tolist(), combine_proxies(None, a, "tts").tolist()
        ([0.707, 0.707], [0.0, 1.0])
    """
    if mode not in PROXY_MODES:
        raise ValueError(f"proxy mode {mode!r}; expected one of {PROXY_MODES}")
    need_text, need_tts = mode in ("text", "both"), mode in ("tts", "both")
    if (need_text and text is None) or (need_tts and acoustic is None):
        raise ValueError(
            f"proxy mode {mode!r} needs {'text and acoustic' if mode == 'both' else mode} proxies"
        )
    if mode == "text":
        return np.asarray(text, np.float32)
    if mode == "tts":
        return np.asarray(acoustic, np.float32)
    both = np.asarray(text, np.float32) + np.asarray(acoustic, np.float32)
    return np.asarray(both / np.maximum(np.linalg.norm(both, axis=-1, keepdims=True), 1e-9), np.float32)

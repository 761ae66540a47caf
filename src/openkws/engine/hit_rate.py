"""Expected hit rate at enrollment: the share of TTS renditions of a keyword the detector fires on.

The renditions are the ones ``proxy: "tts"`` synthesizes (:data:`openkws.text.tts.PROXY_VOICES`,
held-in voices), each also played 10% slower and 10% faster (resampled, so the pitch follows, as
sox's ``speed``) and once under pink noise at :data:`NOISE_SNR_DB`. Every variant goes through the
engine as a stream of its own (batched in one step; the stream's pre-roll and end flush give it
silence on both sides), and its score is the best cosine of any window the detector evaluates with
the keyword's proxy: the score a detection would report. The expected hit rate is the share of
variants scoring at or above the threshold.

It is a TTS estimate: synthetic voices of the training engines, clean or lightly noisy, so it is an
upper bound more than a prediction for a person in a room. Its use is the warning when it is low.

Example (scores of four variants against a threshold):
    >>> hit_rate(np.array([0.8, 0.7, 0.6, 0.5]), 0.65)
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import FrameScores
from openkws.engine.scoring import similarities
from openkws.engine.spotter import Spotter

SPEEDS = (0.9, 1.1)
NOISE_SNR_DB = 10.0
LOW_HIT_RATE = 0.5  # below this, enrollment warns
STREAMS_PER_STEP = 64  # renditions decoded together in one batched engine step (bounds memory)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS pink (1/f power) noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    spec /= np.sqrt(np.maximum(f, 1.0))
    x = np.fft.irfft(spec, n)
    return np.asarray(x / max(1e-12, float(np.sqrt(np.mean(x**2)))), np.float32)


def variants(renditions: Sequence[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Each rendition as is, at each of :data:`SPEEDS`, and under pink noise (16 kHz float32)."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for w in renditions:
        w = np.asarray(w, np.float32).reshape(-1)
        if len(w) == 0:
            raise ValueError("empty rendition: no audio to score")
        out.append(w)
        # speed s plays the same samples s times faster: resample from s*SR to SR
        out += [np.asarray(soxr.resample(w, round(s * SAMPLE_RATE), SAMPLE_RATE), np.float32) for s in SPEEDS]
        speech = w[np.abs(w) > 0.05 * float(np.abs(w).max())]
        rms = float(np.sqrt(np.mean(speech**2))) if len(speech) else 0.0
        noise = pink_noise(len(w), rng) * rms * 10 ** (-NOISE_SNR_DB / 20)
        out.append(np.clip(w + noise, -1.0, 1.0).astype(np.float32))
    return out


def window_embeddings(spotter: Spotter, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each wave through its own engine stream (batched) -> [n_windows, D] embeddings of every window
    the detector evaluates on it."""
    dim = spotter.spec.embedding_dim
    out: list[np.ndarray] = []
    for c in range(0, len(waves), STREAMS_PER_STEP):
        part = waves[c : c + STREAMS_PER_STEP]
        frames: list[list[FrameScores]] = [[] for _ in part]
        streams = [spotter.create_stream(keyword_subset=(), score_hook=f.append) for f in frames]
        for s, w in zip(streams, part, strict=True):
            s.accept_waveform(SAMPLE_RATE, np.asarray(w, np.float32))
            s.input_finished()
        while busy := [s for s in streams if s.ready()]:
            spotter.decode_streams(busy)
        out += [
            np.concatenate([f.embeddings for f in fs]) if fs else np.zeros((0, dim), np.float32)
            for fs in frames
        ]
    return out


def best_scores(embeddings: Sequence[np.ndarray], proxy: np.ndarray) -> np.ndarray:
    """The best window score of each rendition against ``proxy`` [D] (-1 for a rendition without windows)."""
    p = np.asarray(proxy, np.float32)[None, :]
    return np.array([float(similarities(e, p).max()) if len(e) else -1.0 for e in embeddings], np.float64)


def hit_rate(scores: np.ndarray, threshold: float) -> float:
    """Share of renditions whose best score reaches ``threshold``."""
    if len(scores) == 0:
        raise ValueError("no rendition scores: a hit rate needs at least one")
    return round(float(np.mean(np.asarray(scores) >= threshold)), 4)


def expected_hit_rates(
    spotter: Spotter, keywords: Sequence[tuple[np.ndarray, float, Sequence[np.ndarray]]]
) -> list[float]:
    """(proxy [D], threshold, renditions) per keyword -> its expected hit rate over the renditions'
    :func:`variants` (all keywords' variants decoded together)."""
    waves = [variants(r) for _, _, r in keywords]
    embs = window_embeddings(spotter, [w for ws in waves for w in ws])
    out, k = [], 0
    for (proxy, threshold, _), ws in zip(keywords, waves, strict=True):
        out.append(hit_rate(best_scores(embs[k : k + len(ws)], proxy), threshold))
        k += len(ws)
    return out

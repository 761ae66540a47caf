"""Named listening conditions: each keyword clip placed in 2-3 s of background on both sides.

A condition's stream is ``[gap][clip][gap][clip]...[gap]`` with gaps of 2-3 s over one background
track, so every clip has 2-3 s of background before and after it. Clips are levelled to
:data:`.sources.SPEECH_RMS` and the background is set relative to that level:

* ``quiet``: pink noise 40 dB below speech (a low noise floor);
* ``noise``: stationary white/pink/brown noise at 10 dB SNR;
* ``music``: the Asterisk music-on-hold tracks at 10 dB SNR;
* ``babble``: three overlapping TTS talkers (evaluation voices) at 10 dB SNR;
* ``reverb``: the clip convolved with a simulated room (pyroomacoustics, RT60 0.3-0.6 s) over the
  quiet floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.training.data.augment import colored_noise, reverberate
from openkws.training.eval_streams.sources import SPEECH_RMS, Segment, level

CONDITIONS = ("quiet", "noise", "music", "babble", "reverb")
SNR_DB = 10.0
QUIET_FLOOR_DB = 40.0
GAP_S = (2.0, 3.0)
RT60 = (0.3, 0.6)
NOISE_COLORS = ("white", "pink", "brown")


@dataclass(frozen=True)
class Placed:
    """One clip in a stream: keyword text, speech span (s) and the clip's manifest row index."""

    keyword: str
    start_s: float
    end_s: float
    clip: int


def speech_span(wave: np.ndarray, top_db: float = 35.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within ``top_db`` of the loudest frame."""
    hop = SAMPLE_RATE // 100
    n = max(1, len(wave) // hop)
    e = (np.asarray(wave[: n * hop], np.float64).reshape(n, -1) ** 2).mean(axis=1) + 1e-12
    active = np.flatnonzero(10 * np.log10(e / e.max()) > -top_db)
    return int(active[0]) * hop, min(len(wave), (int(active[-1]) + 1) * hop)


def _scaled(track: np.ndarray, below_db: float) -> np.ndarray:
    return level(track, SPEECH_RMS * 10 ** (-below_db / 20.0))


def _loop(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    reps = -(-n // len(pool)) + 1
    tiled = np.tile(pool, reps)
    start = int(rng.integers(0, len(tiled) - n + 1))
    return tiled[start : start + n]


class Backgrounds:
    """Background tracks per condition, from the music tracks and a pool of TTS babble speech."""

    def __init__(
        self, music: Sequence[Segment], babble_pool: Sequence[Segment], rirs: Sequence[np.ndarray]
    ) -> None:
        self.music = [m.audio for m in music]
        self.babble = (
            np.concatenate([s.audio for s in babble_pool]) if babble_pool else np.zeros(0, np.float32)
        )
        self.rirs = list(rirs)

    def track(self, condition: str, n: int, rng: np.random.Generator) -> np.ndarray:

        if condition in ("quiet", "reverb"):
            return _scaled(colored_noise(n, "pink", rng), QUIET_FLOOR_DB)
        if condition == "noise":
            color = NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))]
            return _scaled(colored_noise(n, color, rng), SNR_DB)
        if condition == "music":
            return _scaled(_loop(self.music[int(rng.integers(len(self.music)))], n, rng), SNR_DB)
        if condition == "babble":
            if not len(self.babble):
                raise ValueError("babble needs a TTS speech pool")
            mix = sum(_loop(self.babble, n, rng) for _ in range(3))
            return _scaled(np.asarray(mix, np.float32), SNR_DB)
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")

    def clip(self, condition: str, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wave = level(wave)
        if condition != "reverb":
            return wave

        rir = self.rirs[int(rng.integers(len(self.rirs)))]
        return level(reverberate(wave, rir, tail_s=0.3))


def build_stream(
    condition: str, clips: Sequence[tuple[int, str, np.ndarray]], bg: Backgrounds, rng: np.random.Generator
) -> tuple[np.ndarray, list[Placed]]:
    """Place ``(row, keyword, wave)`` clips in ``condition`` -> (stream audio, placements)."""
    pieces = [bg.clip(condition, w, rng) for _, _, w in clips]
    gaps = [int(rng.uniform(*GAP_S) * SAMPLE_RATE) for _ in range(len(pieces) + 1)]
    n = sum(gaps) + sum(len(p) for p in pieces)
    audio = bg.track(condition, n, rng).astype(np.float32)
    placed: list[Placed] = []
    pos = gaps[0]
    for (row, kw, _), piece, gap in zip(clips, pieces, gaps[1:], strict=True):
        audio[pos : pos + len(piece)] += piece
        a, b = speech_span(piece)
        placed.append(Placed(kw, (pos + a) / SAMPLE_RATE, (pos + b) / SAMPLE_RATE, row))
        pos += len(piece) + gap
    return np.clip(audio, -1.0, 1.0), placed

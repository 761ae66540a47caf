"""Speaker augmentation: new voices from existing renditions (Praat through parselmouth, pedalboard).

One call makes a different-sounding speaker out of a clip:

- Praat's "Change gender" (PSOLA) shifts the formants (vocal-tract length), the pitch median and
  the pitch range, and changes the duration, all at once and independently of each other;
- a pedalboard shelving filter tilts the spectrum (shouted speech is brighter, whispered and
  distant speech darker).

The ranges follow issue 11: pitch +-5 semitones, formant ratio 0.8-1.25, tempo 0.7-1.4 (duration
1/tempo, pitch kept), pitch range x0.5-1 (flatter prosody; widening it can hang Praat), tilt +-6 dB. Every draw comes
from the generator given, so a (clip, seed) pair always gives the same voice.

Example:
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(16_000) / 16_000
    >>> wave = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    >>> out = change_speaker(wave, SpeakerParams(pitch_semitones=0, formant_ratio=1, tempo=2.0, pitch_range=1,
    ...                                          tilt_db=0))
    >>> abs(len(out) / len(wave) - 0.5) < 0.02, out.dtype
    (True, dtype('float32'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import parselmouth
import pedalboard
from parselmouth.praat import call

from openkws.constants import SAMPLE_RATE

PITCH_FLOOR_HZ = 75.0
PITCH_CEILING_HZ = 600.0
TILT_CORNER_HZ = 1500.0  # shelf corner: above it the spectrum is lifted or lowered by tilt_db


@dataclass(frozen=True)
class SpeakerRanges:
    """Uniform ranges the speaker parameters are drawn from (``p`` = chance a clip is changed)."""

    p: float = 1.0
    pitch_semitones: tuple[float, float] = (-5.0, 5.0)
    formant_ratio: tuple[float, float] = (0.8, 1.25)
    tempo: tuple[float, float] = (0.7, 1.4)
    # Praat's change-gender can spin for minutes when it *widens* the pitch range (seen at x1.83 on
    # a 243 Hz voice): only flattening (< 1) is drawn.
    pitch_range: tuple[float, float] = (0.5, 1.0)
    tilt_db: tuple[float, float] = (-6.0, 6.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"speaker augmentation probability {self.p} is outside [0, 1]")
        for name in ("pitch_semitones", "formant_ratio", "tempo", "pitch_range", "tilt_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"speaker range {name} = ({lo}, {hi}) has lo > hi")
        if min(self.formant_ratio[0], self.tempo[0], self.pitch_range[0]) <= 0:
            raise ValueError("formant_ratio, tempo and pitch_range must be positive")


@dataclass(frozen=True)
class SpeakerParams:
    pitch_semitones: float
    formant_ratio: float
    tempo: float
    pitch_range: float
    tilt_db: float


def draw_params(ranges: SpeakerRanges, rng: np.random.Generator) -> SpeakerParams:
    """One random speaker. Formant ratio and tempo are drawn log-uniformly (ratios, not offsets)."""

    def log_u(lo_hi: tuple[float, float]) -> float:
        return float(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))

    return SpeakerParams(
        pitch_semitones=float(rng.uniform(*ranges.pitch_semitones)),
        formant_ratio=log_u(ranges.formant_ratio),
        tempo=log_u(ranges.tempo),
        pitch_range=log_u(ranges.pitch_range),
        tilt_db=float(rng.uniform(*ranges.tilt_db)),
    )


def _median_pitch(sound: parselmouth.Sound) -> float:
    """Median F0 in Hz, or 0 for unvoiced audio (whispered voices: Praat then keeps the pitch)."""
    pitch = call(sound, "To Pitch", 0.0, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    f0 = call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")
    return 0.0 if not math.isfinite(f0) else float(f0)


def _praat_change_gender(sound: parselmouth.Sound, params: SpeakerParams) -> np.ndarray | None:
    """Praat's change-gender, or None where Praat finds too few voiced periods to work with."""
    f0 = _median_pitch(sound)
    if f0 <= 0:
        return None
    new_f0 = min(f0 * 2.0 ** (params.pitch_semitones / 12.0), PITCH_CEILING_HZ - 50.0)
    try:
        out = call(
            sound,
            "Change gender",
            PITCH_FLOOR_HZ,
            PITCH_CEILING_HZ,
            params.formant_ratio,
            new_f0,
            params.pitch_range,
            1.0 / params.tempo,
        )
    except parselmouth.PraatError:  # e.g. a pitch range undefined on a few isolated voiced frames
        return None
    return np.asarray(out.values[0], np.float32)


def change_speaker(wave: np.ndarray, params: SpeakerParams) -> np.ndarray:
    """``wave`` (16 kHz float32) spoken by the speaker ``params`` describes; length ~ len / tempo."""
    if len(wave) < SAMPLE_RATE // 50:
        raise ValueError(f"clip of {len(wave)} samples is too short for speaker augmentation")
    sound = parselmouth.Sound(np.asarray(wave, np.float64), SAMPLE_RATE)
    y = _praat_change_gender(sound, params)
    if y is None:  # unvoiced (whispered) speech: PSOLA has no periods to move; shift the whole spectrum
        shift = 12.0 * math.log2(params.formant_ratio)
        y = pedalboard.time_stretch(
            np.asarray(wave, np.float32)[None],
            SAMPLE_RATE,
            stretch_factor=params.tempo,
            pitch_shift_in_semitones=shift,
        )[0]
    if params.tilt_db:
        shelf = pedalboard.HighShelfFilter(cutoff_frequency_hz=TILT_CORNER_HZ, gain_db=params.tilt_db)
        y = pedalboard.Pedalboard([shelf])(y, SAMPLE_RATE)
    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    src_peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak > 0 and src_peak > 0:  # keep the source level: level is the room augmenter's job
        y = y * (src_peak / peak)
    return y.astype(np.float32)


def random_speaker(wave: np.ndarray, ranges: SpeakerRanges, rng: np.random.Generator) -> np.ndarray:
    """With probability ``ranges.p``, ``wave`` through a random :func:`change_speaker`; else unchanged."""
    if rng.random() >= ranges.p:
        return wave
    return change_speaker(wave, draw_params(ranges, rng))

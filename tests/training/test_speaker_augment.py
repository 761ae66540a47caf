"""Speaker augmentation (Praat change-gender + tilt) and partial cuts, on synthetic voiced audio."""

from __future__ import annotations

import numpy as np
import parselmouth
import pytest
from parselmouth.praat import call

from openkws.training.data.speaker import (
    SpeakerParams,
    SpeakerRanges,
    change_speaker,
    draw_params,
    random_speaker,
)
from openkws.training.loader.renditions import partial_cut

SR = 16_000


def vowel(f0: float = 120.0, seconds: float = 1.0) -> np.ndarray:
    """A pulse train through two formant-like resonances: voiced, with a clear pitch."""
    n = int(SR * seconds)
    src = np.zeros(n)
    src[:: int(SR / f0)] = 1.0
    out = src.copy()
    for fc in (700.0, 1200.0):
        r, th = 0.97, 2 * np.pi * fc / SR
        y = np.zeros(n)
        for t in range(2, n):
            y[t] = out[t] + 2 * r * np.cos(th) * y[t - 1] - r * r * y[t - 2]
        out = y
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def median_f0(wave: np.ndarray) -> float:
    pitch = call(parselmouth.Sound(wave.astype(np.float64), SR), "To Pitch", 0.0, 75.0, 600.0)
    return float(call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz"))


def test_pitch_shift_moves_the_median_f0_by_the_semitones() -> None:
    wave = vowel(120.0)
    up = change_speaker(
        wave, SpeakerParams(pitch_semitones=5.0, formant_ratio=1.0, tempo=1.0, pitch_range=1.0, tilt_db=0.0)
    )
    ratio = median_f0(up) / median_f0(wave)
    assert ratio == pytest.approx(2 ** (5 / 12), rel=0.04)


def test_tempo_changes_duration_not_pitch() -> None:
    wave = vowel(150.0)
    slow = change_speaker(
        wave, SpeakerParams(pitch_semitones=0.0, formant_ratio=1.0, tempo=0.7, pitch_range=1.0, tilt_db=0.0)
    )
    assert len(slow) / len(wave) == pytest.approx(1 / 0.7, rel=0.03)
    assert median_f0(slow) == pytest.approx(median_f0(wave), rel=0.04)


def test_tilt_brightens_or_darkens_and_level_is_kept() -> None:
    wave = vowel(120.0)
    flat = SpeakerParams(0.0, 1.0, 1.0, 1.0, 0.0)

    def hf_share(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x)) ** 2
        return float(spec[len(spec) // 4 :].sum() / spec.sum())

    base = change_speaker(wave, flat)
    bright = change_speaker(wave, SpeakerParams(0.0, 1.0, 1.0, 1.0, 6.0))
    dark = change_speaker(wave, SpeakerParams(0.0, 1.0, 1.0, 1.0, -6.0))
    assert hf_share(dark) < hf_share(base) < hf_share(bright)
    assert np.abs(bright).max() == pytest.approx(np.abs(wave).max(), rel=1e-3)


def test_unvoiced_audio_still_changes() -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    out = change_speaker(noise, SpeakerParams(3.0, 1.2, 1.25, 1.0, 0.0))
    assert len(out) == pytest.approx(SR / 1.25, rel=0.05) and np.isfinite(out).all()


def test_draws_are_in_range_and_deterministic() -> None:
    r = SpeakerRanges()
    a = [draw_params(r, np.random.default_rng(s)) for s in range(50)]
    assert a[3] == draw_params(r, np.random.default_rng(3))
    assert all(
        -5 <= p.pitch_semitones <= 5 and 0.8 <= p.formant_ratio <= 1.25 and 0.7 <= p.tempo <= 1.4 for p in a
    )
    wave = vowel()
    assert random_speaker(wave, SpeakerRanges(p=0.0), np.random.default_rng(0)) is wave


def test_bad_ranges_and_short_clips_raise() -> None:
    with pytest.raises(ValueError, match="lo > hi"):
        SpeakerRanges(tempo=(1.4, 0.7))
    with pytest.raises(ValueError, match="positive"):
        SpeakerRanges(formant_ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="outside"):
        SpeakerRanges(p=1.5)
    with pytest.raises(ValueError, match="too short"):
        change_speaker(np.zeros(100, np.float32), SpeakerParams(0.0, 1.0, 1.0, 1.0, 0.0))


def test_partial_cut_keeps_a_prefix_or_suffix_of_the_speech() -> None:
    wave = np.zeros(SR, np.float32)
    wave[4000:12000] = vowel(seconds=0.5)
    for seed in range(20):
        cut = partial_cut(wave, np.random.default_rng(seed))
        speech = np.count_nonzero(np.abs(cut) > 1e-4)
        assert 0.3 * 8000 < speech < 0.72 * 8000

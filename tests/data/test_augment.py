"""Augmentation: deterministic under a seed, exact SNR, effects that really happen."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.training.data.augment import (
    AugmentConfig,
    Augmenter,
    add_context,
    add_noise,
    babble,
    band_limit,
    colored_noise,
    measure_snr,
    mu_law,
    pitch_shift,
    reverberate,
    rir_bank,
    speed_perturb,
    telephone,
)

SR = 16_000


def _tone(hz: float = 200.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_hits_the_snr(color: str, target: float) -> None:
    rng = np.random.default_rng(0)
    wave = _tone()
    noisy = add_noise(wave, colored_noise(len(wave) // 3, color, rng), target, rng)  # short noise is looped
    assert measure_snr(wave, noisy - wave) == pytest.approx(target, abs=0.01)


def test_noise_colors_have_their_slopes() -> None:
    rng = np.random.default_rng(1)
    slopes = {}
    for color in ("white", "pink", "brown"):
        spec = np.abs(np.fft.rfft(colored_noise(1 << 16, color, rng))) ** 2
        f = np.fft.rfftfreq(1 << 16, 1 / SR)
        band = (f > 100) & (f < 6000)
        slopes[color] = np.polyfit(np.log10(f[band]), np.log10(spec[band] + 1e-20), 1)[0]
    assert slopes["white"] == pytest.approx(0.0, abs=0.15)
    assert slopes["pink"] == pytest.approx(-1.0, abs=0.15)
    assert slopes["brown"] == pytest.approx(-2.0, abs=0.15)
    with pytest.raises(ValueError, match="unknown noise color"):
        colored_noise(10, "purple", rng)


def test_pitch_and_speed_move_the_frequency() -> None:
    x = _tone(200.0)
    up = pitch_shift(x, 2.0)
    assert len(up) == len(x)
    assert _peak_hz(up) == pytest.approx(200 * 2 ** (2 / 12), abs=2.0)
    fast = speed_perturb(x, 1.1)
    assert len(fast) == round(len(x) / 1.1)
    assert _peak_hz(fast) == pytest.approx(220.0, abs=2.0)


def test_telephone_is_narrowband_and_quantised() -> None:
    rng = np.random.default_rng(2)
    x = colored_noise(SR, "white", rng) * 0.1
    y = telephone(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    assert spec[f > 4200].sum() < 1e-3 * spec.sum()
    assert len(y) == len(x)
    assert len(np.unique(mu_law(x))) <= 256
    z = band_limit(x, 3000.0)
    zs = np.abs(np.fft.rfft(z))
    assert zs[f > 3100].max() < 1e-4 * zs.max()


def test_reverb_keeps_level_and_adds_tail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rirs = rir_bank(3, seed=0, cache_dir=tmp_path)
    again = rir_bank(3, seed=0, cache_dir=tmp_path)  # from the cache
    assert all(np.array_equal(a, b) for a, b in zip(rirs, again, strict=True))
    assert len(list(tmp_path.glob("*.npz"))) == 1
    x = _tone()
    y = reverberate(x, rirs[0])
    assert len(y) == len(x) + SR // 4
    assert np.sqrt(np.mean(y[: len(x)] ** 2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    assert np.abs(y[len(x) :]).max() > 1e-3  # a reverberant tail exists


def test_context_and_babble() -> None:
    rng = np.random.default_rng(3)
    x = _tone()
    speech = lambda r: _tone(float(r.integers(100, 300)), 0.5)  # noqa: E731
    for kind in ("silence", "noise", "speech"):
        y = add_context(x, 0.2, 0.1, kind, rng, speech)
        assert len(y) == len(x) + int(0.2 * SR) + int(0.1 * SR)
        assert np.array_equal(y[int(0.2 * SR) : int(0.2 * SR) + len(x)], x)
    b = babble(SR, speech, 3, rng)
    assert len(b) == SR and np.sqrt(np.mean(b**2)) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError, match="speech source"):
        add_context(x, 0.1, 0.1, "speech", rng, None)


def test_augmenter_is_deterministic_under_seed() -> None:
    cfg = AugmentConfig(
        p_speed=0.5, p_pitch=0.5, p_context=0.5, p_reverb=0.5, p_noise=0.8, p_babble=0.5, p_telephone=0.3
    )
    rirs = [np.exp(-np.arange(2000) / 300.0).astype(np.float32)]
    speech = lambda r: _tone(float(r.integers(100, 300)), 0.3)  # noqa: E731
    waves = [_tone(150.0 + 10 * i, 0.6) for i in range(12)]
    a = Augmenter(cfg, np.random.default_rng(7), rirs, speech)
    b = Augmenter(cfg, np.random.default_rng(7), rirs, speech)
    c = Augmenter(cfg, np.random.default_rng(8), rirs, speech)
    out_a, out_b, out_c = [a(w) for w in waves], [b(w) for w in waves], [c(w) for w in waves]
    assert all(np.array_equal(x, y) for x, y in zip(out_a, out_b, strict=True))
    assert any(len(x) != len(y) or not np.array_equal(x, y) for x, y in zip(out_a, out_c, strict=True))
    assert all(x.dtype == np.float32 and np.abs(x).max() <= 0.99 + 1e-6 for x in out_a)


def test_augmenter_rejects_empty_and_keeps_silence_silent() -> None:
    aug = Augmenter(AugmentConfig(p_noise=1.0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        aug(np.zeros(0, np.float32))
    assert np.array_equal(add_noise(np.zeros(100, np.float32), np.ones(100), 10.0), np.zeros(100, np.float32))

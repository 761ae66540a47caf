"""On-the-fly waveform augmentation for the training data loader (numpy only, 16 kHz float32).

Building blocks (pure functions of ``(wave, ..., rng)``)::

    speed_perturb(wave, factor)            tempo and pitch together (resampling), Kaldi-style
    pitch_shift(wave, semitones)           pitch only: resample + WSOLA time-stretch back
    apply_gain(wave, db), band_limit(wave, cutoff_hz)
    colored_noise(n, color, rng)           white / pink (1/f) / brown (1/f^2), unit RMS
    add_noise(wave, noise, snr_db)         exact SNR: 10 log10(P_wave / P_noise_scaled) == snr_db
    reverberate(wave, rir)                 convolution, direct path aligned to t=0, tail kept
    babble(n, speech, k, rng)              sum of k other TTS clips
    telephone(wave)                        8 kHz, 300-3400 Hz band, G.711 mu-law, back to 16 kHz
    add_context(wave, lead_s, tail_s, kind, rng, speech)   silence / noise / other speech around

:class:`Augmenter` composes them with probabilities from an :class:`AugmentConfig`; every random
choice comes from the generator it is given, so ``Augmenter(cfg, np.random.default_rng(s))``
applied to the same inputs in the same order gives the same outputs.

Rooms: :func:`rir_bank` (pyroomacoustics, cached under ``data/rirs/``); other speech: a
:data:`SpeechSource` (``rng -> wave``), e.g. :class:`ClipPool` over a manifest.

Example:
    >>> rng = np.random.default_rng(0)
    >>> wave = (0.1 * np.sin(np.arange(16_000) / 3.0)).astype(np.float32)
    >>> noisy = add_noise(wave, colored_noise(len(wave), "pink", rng), snr_db=10.0)
    >>> round(measure_snr(wave, noisy - wave), 3)
    10.0
    >>> out = Augmenter(AugmentConfig(), np.random.default_rng(1))(wave); out.dtype, bool(np.abs(out).max() <= 1)
    (dtype('float32'), True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.training.data.audio import read_wav

SpeechSource = Callable[[np.random.Generator], np.ndarray]
TELEPHONE_RATE = 8_000
MU = 255.0  # G.711 mu-law
NOISE_COLORS = ("white", "pink", "brown")
_EPS = 1e-12


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def measure_snr(signal: np.ndarray, noise: np.ndarray) -> float:
    """10 log10 of the signal-to-noise power ratio (whole-clip mean powers)."""
    return float(10.0 * np.log10((power(signal) + _EPS) / (power(noise) + _EPS)))


def resample(wave: np.ndarray, factor: float) -> np.ndarray:
    """Stretch ``wave`` to ``round(len * factor)`` samples by linear interpolation."""
    n = max(1, round(len(wave) * factor))
    return _f32(np.interp(np.linspace(0, len(wave) - 1, n), np.arange(len(wave)), wave))


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (shorter and higher), like Kaldi's speed perturbation."""
    return resample(wave, 1.0 / factor)


def time_stretch(wave: np.ndarray, rate: float, frame: int = 512, tolerance: int = 128) -> np.ndarray:
    """WSOLA: change duration by ``1/rate`` without changing pitch (frames aligned by cross-correlation)."""
    hop = frame // 2
    win = np.hanning(frame).astype(np.float32)
    n_out = max(frame, round(len(wave) / rate))
    padded = np.pad(wave, (tolerance, frame + tolerance + round(n_out * rate)))
    out = np.zeros(n_out + frame, dtype=np.float32)
    norm = np.zeros_like(out)
    prev_tail = None
    for k, pos_out in enumerate(range(0, n_out, hop)):
        ideal = round(pos_out * rate) + tolerance
        if prev_tail is None:
            best = ideal
        else:  # the segment that best continues what was written
            seg = padded[ideal - tolerance : ideal + tolerance + hop]
            corr = np.correlate(seg, prev_tail, mode="valid")
            best = ideal - tolerance + int(np.argmax(corr))
        chunk = padded[best : best + frame]
        out[pos_out : pos_out + frame] += chunk * win
        norm[pos_out : pos_out + frame] += win
        prev_tail = padded[best + hop : best + frame]
        del k
    return _f32(out[:n_out] / np.maximum(norm[:n_out], 1e-3))


def pitch_shift(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration (resample, then WSOLA back)."""
    factor = 2.0 ** (semitones / 12.0)
    higher = resample(wave, 1.0 / factor)  # shorter by factor, pitch up by factor
    return time_stretch(higher, rate=len(higher) / len(wave))


def apply_gain(wave: np.ndarray, db: float) -> np.ndarray:
    return _f32(wave * 10.0 ** (db / 20.0))


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f^alpha power spectrum: white (0), pink (1), brown (2)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(color)
    if alpha is None:
        raise ValueError(f"unknown noise color {color!r}; use one of {NOISE_COLORS}")
    white = rng.standard_normal(n)
    if alpha:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        white = np.fft.irfft(spec / f ** (alpha / 2.0), n)
    return _f32(white / (np.sqrt(power(white)) + _EPS))


def _fit(noise: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Loop or crop ``noise`` to ``n`` samples (random offset if ``rng`` is given)."""
    if len(noise) == 0:
        raise ValueError("empty noise")
    if len(noise) < n:
        noise = np.tile(noise, -(-n // len(noise)))
    start = int(rng.integers(0, len(noise) - n + 1)) if rng is not None else 0
    return noise[start : start + n]


def add_noise(
    wave: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Mix ``noise`` (looped/cropped to length) so that the mixture has exactly ``snr_db``.

    Silent ``wave`` is returned unchanged (no SNR is defined).
    """
    ps = power(wave)
    if ps <= _EPS:
        return _f32(wave)
    noise = _fit(np.asarray(noise, dtype=np.float64), len(wave), rng)
    pn = power(noise)
    if pn <= _EPS:
        return _f32(wave)
    scale = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return _f32(wave + scale * noise)


def reverberate(wave: np.ndarray, rir: np.ndarray, tail_s: float = 0.25) -> np.ndarray:
    """Convolve with ``rir`` (direct path moved to t=0), keeping ``tail_s`` of reverberant tail.

    The result keeps the input's RMS level, so reverberation does not double as a gain change.
    """
    rir = np.asarray(rir, dtype=np.float64)
    rir = rir[int(np.argmax(np.abs(rir))) :]
    n = len(wave) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(rir, size), size)[
        : len(wave) + int(tail_s * SAMPLE_RATE)
    ]
    wet *= np.sqrt((power(wave) + _EPS) / (power(wet[: len(wave)]) + _EPS))
    return _f32(wet)


def band_limit(wave: np.ndarray, high_hz: float, low_hz: float = 0.0) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain (keeps ``low_hz``..``high_hz``)."""
    spec = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(len(wave), 1.0 / SAMPLE_RATE)
    spec[(freqs > high_hz) | (freqs < low_hz)] = 0
    return _f32(np.fft.irfft(spec, len(wave)))


def mu_law(wave: np.ndarray) -> np.ndarray:
    """G.711 mu-law encode to 8 bits and decode back (the codec's quantisation noise)."""
    x = np.clip(wave, -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0  # 256 levels
    return _f32(np.sign(q) * ((1.0 + MU) ** np.abs(q) - 1.0) / MU)


def _fft_resample(wave: np.ndarray, n_out: int) -> np.ndarray:
    spec = np.fft.rfft(wave)
    keep = min(len(spec), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spec[:keep]
    return _f32(np.fft.irfft(out_spec, n_out) * (n_out / len(wave)))


def telephone(wave: np.ndarray) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz, 8 kHz G.711 mu-law, back to 16 kHz."""
    narrow = band_limit(wave, 3400.0, 300.0)
    n8 = max(1, len(wave) * TELEPHONE_RATE // SAMPLE_RATE)
    coded = mu_law(_fft_resample(narrow, n8))
    return _fft_resample(coded, len(wave))


def babble(n: int, speech: SpeechSource, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` talkers: random clips laid end to end per talker (random start), summed, unit RMS."""
    total = np.zeros(n, dtype=np.float64)
    for _ in range(k):
        track: list[np.ndarray] = []
        length = 0
        while length < n + SAMPLE_RATE:
            clip = speech(rng)
            track.append(clip)
            length += len(clip)
        talker = np.concatenate(track)
        start = int(rng.integers(0, len(talker) - n + 1))
        total += talker[start : start + n] / (np.sqrt(power(talker)) + _EPS)
    return _f32(total / (np.sqrt(power(total)) + _EPS))


def add_context(
    wave: np.ndarray,
    lead_s: float,
    tail_s: float,
    kind: str,
    rng: np.random.Generator,
    speech: SpeechSource | None = None,
    level_db: float = -20.0,
) -> np.ndarray:
    """Pad with ``lead_s``/``tail_s`` of ``silence``, ``noise`` or other ``speech`` (``level_db`` below the clip).

    Other speech is taken from the end (lead) and the start (tail) of random clips, so the key
    phrase sits between neighbouring words, as it does in running speech.
    """
    lead, tail = int(lead_s * SAMPLE_RATE), int(tail_s * SAMPLE_RATE)
    ref = np.sqrt(power(wave)) * 10.0 ** (level_db / 20.0)
    if kind == "silence":
        pads = [np.zeros(lead, np.float32), np.zeros(tail, np.float32)]
    elif kind == "noise":
        color = NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))]
        pads = [
            colored_noise(max(lead, 1), color, rng)[:lead] * ref,
            colored_noise(max(tail, 1), color, rng)[:tail] * ref,
        ]
    elif kind == "speech":
        if speech is None:
            raise ValueError("context kind 'speech' needs a speech source")
        before, after = speech(rng), speech(rng)
        before = _f32(before[-lead:] if lead else before[:0])
        after = _f32(after[:tail])
        pads = [np.pad(before, (lead - len(before), 0)), np.pad(after, (0, tail - len(after)))]
        pads = [
            p / (np.sqrt(power(p)) + _EPS) * ref * 10.0 if len(p) else p for p in pads
        ]  # speech at -10 dB
    else:
        raise ValueError(f"unknown context kind {kind!r}; use silence, noise or speech")
    return _f32(np.concatenate([pads[0], wave, pads[1]]))


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges for :class:`Augmenter` (load from YAML with ``AugmentConfig(**d)``)."""

    p_speed: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.2
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    p_context: float = 0.3
    context_s: tuple[float, float] = (0.0, 0.4)
    p_reverb: float = 0.3
    p_noise: float = 0.5
    noise_snr_db: tuple[float, float] = (0.0, 25.0)
    p_babble: float = 0.2
    babble_snr_db: tuple[float, float] = (5.0, 20.0)
    babble_talkers: tuple[int, int] = (2, 5)
    p_telephone: float = 0.1
    p_band_limit: float = 0.1
    band_limit_hz: tuple[float, float] = (3000.0, 7000.0)
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-15.0, 5.0)
    peak_limit: float = 0.99


class Augmenter:
    """Random augmentation chain; ``__call__(wave [T]) -> wave [T']`` (T' differs with speed/context/reverb).

    Order: speed, pitch, context, reverberation, noise, babble, channel (telephone or band limit),
    gain, peak limit. Steps needing a resource that is absent (no RIR bank, no speech source) are
    skipped, never faked. ``rng`` is owned by the augmenter: give each data-loader worker its own.
    """

    def __init__(
        self,
        config: AugmentConfig,
        rng: np.random.Generator,
        rirs: Sequence[np.ndarray] | None = None,
        speech: SpeechSource | None = None,
    ) -> None:
        self.cfg, self.rng, self.rirs, self.speech = config, rng, rirs, speech

    def _u(self, lo_hi: tuple[float, float]) -> float:
        return float(self.rng.uniform(*lo_hi))

    def _p(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        c, rng = self.cfg, self.rng
        x = _f32(wave)
        if len(x) == 0:
            raise ValueError("cannot augment empty audio")
        if self._p(c.p_speed):
            x = speed_perturb(x, self._u(c.speed_range))
        if self._p(c.p_pitch):
            x = pitch_shift(x, self._u(c.pitch_semitones))
        if self._p(c.p_context):
            kinds = ["silence", "noise"] + (["speech"] if self.speech is not None else [])
            kind = kinds[int(rng.integers(len(kinds)))]
            x = add_context(x, self._u(c.context_s), self._u(c.context_s), kind, rng, self.speech)
        if self.rirs and self._p(c.p_reverb):
            x = reverberate(x, self.rirs[int(rng.integers(len(self.rirs)))])
        if self._p(c.p_noise):
            color = NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))]
            x = add_noise(x, colored_noise(len(x), color, rng), self._u(c.noise_snr_db))
        if self.speech is not None and self._p(c.p_babble):
            k = int(rng.integers(c.babble_talkers[0], c.babble_talkers[1] + 1))
            x = add_noise(x, babble(len(x), self.speech, k, rng), self._u(c.babble_snr_db))
        if self._p(c.p_telephone):
            x = telephone(x)
        elif self._p(c.p_band_limit):
            x = band_limit(x, self._u(c.band_limit_hz))
        if self._p(c.p_gain):
            x = apply_gain(x, self._u(c.gain_db))
        peak = float(np.max(np.abs(x)))
        if peak > c.peak_limit:
            x = x * (c.peak_limit / peak)
        return _f32(x)


class ClipPool:
    """A :data:`SpeechSource` over WAV files (e.g. a manifest's train clips), with a small LRU cache."""

    def __init__(self, paths: Sequence[str | Path], cache_size: int = 512) -> None:
        if not paths:
            raise ValueError("ClipPool needs at least one clip")
        self.paths = [str(p) for p in paths]
        self.cache: dict[str, np.ndarray] = {}
        self.cache_size = cache_size

    def __call__(self, rng: np.random.Generator) -> np.ndarray:

        path = self.paths[int(rng.integers(len(self.paths)))]
        wave = self.cache.get(path)
        if wave is None:
            wave = read_wav(path)
            if len(self.cache) >= self.cache_size:
                self.cache.pop(next(iter(self.cache)))
            self.cache[path] = wave
        return wave


def rir_bank(
    n: int = 200,
    seed: int = 0,
    cache_dir: str | Path = "data/rirs",
    rt60_range: tuple[float, float] = (0.15, 0.9),
) -> list[np.ndarray]:
    """``n`` simulated room impulse responses (16 kHz), generated once per (n, seed) and cached.

    Rooms are shoeboxes 3x3x2.4 m to 10x8x4 m with RT60 drawn from ``rt60_range``; source and
    microphone are placed at random at least 0.5 m from the walls.
    """
    path = Path(cache_dir) / f"rirs_n{n}_seed{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            return [z[f"rir{i}"] for i in range(n)]
    import pyroomacoustics as pra  # lazy: heavy, only when a room bank is simulated (not cached)

    rng = np.random.default_rng(seed)
    rirs: list[np.ndarray] = []
    while len(rirs) < n:
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        rt60 = float(rng.uniform(*rt60_range))
        src, mic = rng.uniform(0.5, dims - 0.5), rng.uniform(0.5, dims - 0.5)
        try:
            e_abs, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # RT60 impossible for this room size: draw another room
            continue
        room = pra.ShoeBox(
            dims,
            fs=SAMPLE_RATE,
            materials=pra.Material(e_abs),
            max_order=min(max_order, 40),
            use_rand_ism=False,
        )
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)
        rirs.append(rir / (np.max(np.abs(rir)) + _EPS))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **{f"rir{i}": r for i, r in enumerate(rirs)})  # type: ignore[arg-type]
    tmp.replace(path)
    return rirs

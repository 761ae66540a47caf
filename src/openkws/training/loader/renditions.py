"""Augmentation glue: one training rendition of a clip = speaker change, context padding, maybe a
neighbouring word, then the room/channel chain, with the keyword's sample span tracked throughout.

The waveform pieces live in the data layer (:mod:`openkws.training.data.speaker` for voices,
:mod:`openkws.training.data.augment` for rooms and channels); this module only orders them and
keeps timing. Partial renditions (a phrase cut before or after its middle) are background
negatives: windows that hold part of a keyword but not the keyword.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openkws.engine.windows import speech_span
from openkws.training.data.augment import AugmentConfig, Augmenter, ClipPool, rir_bank, speed_perturb
from openkws.training.data.speaker import SpeakerRanges, random_speaker

SPEED_PROB = 0.3  # without speaker augmentation: Kaldi-style speed perturbation
SPEED_RANGE = (0.9, 1.1)
CONTEXT_WORD_PROB = 0.5
RIR_COUNT = 100
RIR_SEED = 0
PARTIAL_CUT = (0.35, 0.7)  # where a partial rendition cuts the speech span (fraction of it)
PARTIAL_PREFIX_PROB = 0.7  # "turn on the" for "turn on the lights"; else a suffix ("the lights")
FADE_SAMPLES = 160  # 10 ms fade at a cut, so the cut itself is no cue

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class RenditionSettings:
    """What a cache worker does to a clip (picklable: it travels to the worker processes)."""

    context_samples: int
    speaker: SpeakerRanges | None = None
    room: dict[str, Any] = field(default_factory=dict)  # AugmentConfig overrides


def make_augmenter(
    speech_paths: Sequence[str] | None = None, rir_dir: Path | None = None, room: dict[str, Any] | None = None
) -> Augment:
    """The data layer's :class:`Augmenter` as ``f(wave, rng) -> wave``, timing kept.

    Its speed perturbation and context padding are off (this module does both itself, so it knows
    where the keyword is), and its output is cut or zero-padded back to the input length (a
    reverberation tail past the padded clip is dropped). ``room`` overrides :class:`AugmentConfig`
    fields (noise, reverberation from a cached bank of simulated rooms, babble from
    ``speech_paths``, telephone/band-limit channels, gain); an unknown field is an error.
    """
    settings = {**(room or {}), "p_speed": 0.0, "p_context": 0.0}
    try:
        cfg = AugmentConfig(**settings)
    except TypeError as e:
        raise ValueError(f"unknown room augmentation setting in {sorted(room or {})}: {e}") from None
    rirs = rir_bank(RIR_COUNT, RIR_SEED, rir_dir) if rir_dir is not None else None
    speech = ClipPool(list(speech_paths)) if speech_paths else None
    aug = Augmenter(cfg, np.random.default_rng(0), rirs, speech)

    def apply(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        aug.rng = rng
        out = aug(wave)
        if len(out) >= len(wave):
            return out[: len(wave)]
        return np.pad(out, (0, len(wave) - len(out)))

    return apply


def pad_with_context(wave: np.ndarray, context_samples: int) -> np.ndarray:
    return np.pad(wave, (context_samples, context_samples))


def add_context_word(
    padded: np.ndarray, other: np.ndarray, context_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Put a quieter other word into the left or right context (streams have neighbouring speech)."""
    if context_samples <= 0 or len(other) == 0:
        return padded
    gain = rng.uniform(0.1, 0.5)
    seg = other[-context_samples:] if rng.random() < 0.5 else other[:context_samples]
    out = padded.copy()
    if rng.random() < 0.5:  # left: the word ends where the keyword's context starts
        out[context_samples - len(seg) : context_samples] += gain * seg
    else:
        start = len(padded) - context_samples
        out[start : start + len(seg)] += gain * seg
    return out


def change_voice(wave: np.ndarray, rng: np.random.Generator, speaker: SpeakerRanges | None) -> np.ndarray:
    """A new speaker (Praat) when configured, else the old speed perturbation (probability 0.3)."""
    if speaker is not None:
        return random_speaker(wave, speaker, rng)
    if rng.random() < SPEED_PROB:
        return speed_perturb(wave, float(rng.uniform(*SPEED_RANGE)))
    return wave


def augmented_padded(
    wave: np.ndarray,
    context: int,
    rng: np.random.Generator,
    aug: Augment | None,
    other: np.ndarray | None,
    speaker: SpeakerRanges | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """One augmented training rendition of a clip: voice change, context padding, maybe a
    neighbouring word, then the timing-preserving room chain. Returns (audio, keyword span)."""
    wave = change_voice(wave, rng, speaker)
    s, e = speech_span(wave)  # on the clean (voice-changed) clip: noise would blur it
    padded = pad_with_context(wave, context)
    if other is not None and rng.random() < CONTEXT_WORD_PROB:
        padded = add_context_word(padded, other, context, rng)
    if aug is not None:
        padded = aug(padded, rng)
    return padded.astype(np.float32), (s + context, e + context)


def partial_cut(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip with its speech cut inside the span: a prefix (``PARTIAL_PREFIX_PROB``) or a suffix,
    cut between 35% and 70% of the speech, with a short fade so the cut is not a click."""
    s, e = speech_span(wave)
    cut = s + int(rng.uniform(*PARTIAL_CUT) * (e - s))
    fade = np.linspace(1.0, 0.0, FADE_SAMPLES, dtype=np.float32)
    if rng.random() < PARTIAL_PREFIX_PROB:
        out = wave[:cut].copy()
        n = min(FADE_SAMPLES, len(out))
        out[len(out) - n :] *= fade[FADE_SAMPLES - n :]
    else:
        out = wave[cut:].copy()
        n = min(FADE_SAMPLES, len(out))
        out[:n] *= fade[::-1][:n]
    return out


def phrase_is_partial_source(phoneme_ids: Sequence[int], boundary_id: int, min_phones: int = 5) -> bool:
    """Whether cutting a clip of this pronunciation gives a useful partial: every phrase (it has a
    word boundary) and words of at least ``min_phones`` phones ("ale" for "alexa").

    >>> phrase_is_partial_source([18, 15, 2, 21], 2), phrase_is_partial_source([3, 4, 5], 2)
    (True, False)
    """
    return boundary_id in phoneme_ids or len(phoneme_ids) >= min_phones

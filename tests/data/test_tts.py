"""Synthesis backends: real audio, 16 kHz float32, deterministic per seed, stable voice registry."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.training.data.tts import HELDOUT_VOICES, get_voice, list_voices, synthesize


@pytest.mark.parametrize("voice", ["espeak:en-us+m3", "flite:slt", "festival:kal", "piper:joe"])
def test_each_engine_speaks_deterministically(voice: str) -> None:
    a = synthesize("hey jarvis", voice, seed=7)
    b = synthesize("hey jarvis", voice, seed=7)
    assert a.dtype == np.float32 and a.ndim == 1
    assert 0.4 < len(a) / 16_000 < 3.0
    assert np.array_equal(a, b)
    assert np.abs(a).max() == pytest.approx(0.7, abs=1e-3)


def test_seed_changes_perturbation() -> None:
    a = synthesize("turn on the lights", "espeak:en-gb+f2", seed=1)
    b = synthesize("turn on the lights", "espeak:en-gb+f2", seed=2)
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_registry_has_enough_identities_and_heldout_engine() -> None:
    voices = list_voices()
    assert len({v.id for v in voices}) == len(voices)
    assert sum(v.split == "train" for v in voices) >= 25
    assert {v.id for v in voices if v.split == "heldout"} == set(HELDOUT_VOICES)
    assert all(v.split == "heldout" for v in voices if v.engine == "piper")
    assert get_voice("flite:awb").split == "heldout"


def test_unknown_voice_lists_examples() -> None:
    with pytest.raises(KeyError, match="espeak:en-us"):
        synthesize("hello", "espeak:xx+zz9")

"""Library tests: the packaged model (models/default, no torch) and espeak-ng speech."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openkws import KeywordSpotter

SR = 16_000


@pytest.fixture(scope="session")
def kws() -> KeywordSpotter:
    return KeywordSpotter()


@pytest.fixture(scope="session")
def say() -> Callable[..., np.ndarray]:
    """``say(text, voice="espeak:en-us+m3", pad_s=0.5)``: 16 kHz float32 speech with silence around it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from openkws.text.tts import ProxyTTS

    tts = ProxyTTS()

    def make(text: str, voice: str = "espeak:en-us+m3", pad_s: float = 0.5) -> np.ndarray:
        pad = np.zeros(int(pad_s * SR), np.float32)
        return np.concatenate([pad, tts.synthesize(text, voice), pad, pad])

    return make


@pytest.fixture()
def wav_of(tmp_path: Path, say: Callable[..., np.ndarray]) -> Callable[..., Path]:
    def make(text: str, name: str = "speech.wav", rate: int = SR, **kw: object) -> Path:
        import soxr

        x = say(text, **kw)
        p = tmp_path / name
        sf.write(p, soxr.resample(x, SR, rate) if rate != SR else x, rate, subtype="PCM_16")
        return p

    return make

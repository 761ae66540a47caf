"""Fixtures for the benchmark smoke tests: a short synthesized stream with known keyword times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.streaming import Occurrence

SR = 16_000
KEYWORDS = ("hey jarvis", "penguin")
VOICE = "piper:joe"


@pytest.fixture(scope="session")
def tts():
    try:
        from openkws.training.data.tts import synthesize
    except ImportError as e:  # pragma: no cover - the data layer ships with the repo
        pytest.skip(f"openkws.training.data.tts unavailable: {e}")
    return synthesize


@pytest.fixture(scope="session")
def short_stream(tts) -> tuple[np.ndarray, list[Occurrence]]:
    """~12 s: silence and noise with each keyword spoken once (times known to 10 ms)."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(12 * SR) * 0.003).astype(np.float32)
    occ = []
    for kw, at in zip(KEYWORDS, (2.0, 7.0), strict=True):
        clip = tts(kw, VOICE, seed=1)
        i = int(at * SR)
        audio[i : i + len(clip)] += clip
        occ.append(Occurrence(kw, at, at + len(clip) / SR))
    return audio, occ


@pytest.fixture(scope="session")
def stream_wav(short_stream, tmp_path_factory) -> Path:
    import soundfile as sf

    path = tmp_path_factory.mktemp("bench") / "stream.wav"
    sf.write(str(path), short_stream[0], SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory) -> Path:
    try:
        from openkws.training.export import export_untrained
    except ImportError as e:
        pytest.skip(f"training extra not installed, cannot export a test model: {e}")
    return export_untrained(tmp_path_factory.mktemp("model"), seed=5)

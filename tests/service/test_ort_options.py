"""openkws.engine.ort_options: rebuilt sessions give the same features; bad options are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openkws.engine.ort_options import OrtOptions, apply_options, session_options
from openkws.engine.spotter import Spotter


def test_apply_options_same_features(model_dir: Path) -> None:
    sp = Spotter.load(model_dir, device="cpu")
    audio = np.random.default_rng(1).standard_normal(2 * 16000).astype(np.float32) * 0.1
    before = sp.features.features(audio)
    apply_options(sp, model_dir, OrtOptions(threads=2, spinning=False, arena=False))
    assert sp.features.embedding is sp.sessions.speech_embedding
    np.testing.assert_allclose(sp.features.features(audio), before, atol=1e-5)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="optimization must be one of"):
        OrtOptions(optimization="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fixed_batch must be >= 1"):
        OrtOptions(fixed_batch=0)
    assert session_options(OrtOptions(arena=False)).enable_cpu_mem_arena is False

"""Compatibility names for code written against the old single-module loader; new code imports
from :mod:`openkws.training.loader` (one module per concern)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import crop_window, keyword_window, speech_span
from openkws.training.loader.batcher import Batch, WindowBatcher, pad_stack
from openkws.training.loader.clips import (
    Clip,
    config_clips,
    limit_clips_per_word,
    read_manifest,
    select_clips,
)
from openkws.training.loader.feature_cache import FeatureStore, build_feature_cache
from openkws.training.loader.neighbours import confusable_neighbours
from openkws.training.loader.sampler import KeywordBatches
from openkws.training.loader.wave_store import WaveStore, build_wave_store


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz, resampling other rates (evaluation manifests may hold 8 kHz audio)."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        wave = soxr.resample(wave, sr, SAMPLE_RATE).astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


__all__ = [
    "Batch", "Clip", "FeatureStore", "KeywordBatches", "WaveStore", "WindowBatcher", "build_feature_cache",
    "build_wave_store", "config_clips", "confusable_neighbours", "crop_window", "keyword_window",
    "limit_clips_per_word", "load_audio", "pad_stack", "read_manifest", "select_clips", "speech_span",
]  # fmt: skip

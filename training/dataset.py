"""Compatibility names for code written against the old single-module loader; new code imports
from :mod:`openkws.training.loader` (one module per concern)."""

from __future__ import annotations

from openkws.engine.windows import crop_window, keyword_window, speech_span

from .data.audio import read_wav as load_audio
from .loader.batcher import Batch, WindowBatcher, pad_stack
from .loader.clips import Clip, config_clips, limit_clips_per_word, read_manifest, select_clips
from .loader.feature_cache import FeatureStore, build_feature_cache
from .loader.neighbours import confusable_neighbours
from .loader.sampler import KeywordBatches
from .loader.wave_store import WaveStore, build_wave_store

__all__ = [
    "Batch", "Clip", "FeatureStore", "KeywordBatches", "WaveStore", "WindowBatcher", "build_feature_cache",
    "build_wave_store", "config_clips", "confusable_neighbours", "crop_window", "keyword_window",
    "limit_clips_per_word", "load_audio", "pad_stack", "read_manifest", "select_clips", "speech_span",
]  # fmt: skip

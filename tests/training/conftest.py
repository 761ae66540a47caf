"""Shared fixtures for the training tests: one thread, a tiny real TTS corpus, untrained exports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of ~300 espeak-ng clips: 45 train words x 6 voices, 8 dev words x 3 other voices."""
    from corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def untrained_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from openkws.training.export import export_untrained

    root = tmp_path_factory.mktemp("untrained")
    return {fe: export_untrained(root / fe, fe, seed=1) for fe in ("speech_embedding", "logmel")}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature/waveform cache for every training test on the corpus (keys keep configs apart)."""
    return tmp_path_factory.mktemp("cache")

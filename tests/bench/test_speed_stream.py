"""bench.speed: openkws streamed in chunks, and a model variant named in the system label."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.speed import measure, split_system

MODEL = Path(__file__).resolve().parents[2] / "src" / "openkws" / "models" / "default"


def test_split_system() -> None:
    assert split_system("openkws@runs/q", "models/default") == ("openkws", "runs/q")
    assert split_system("openwakeword", "models/default") == ("openwakeword", "models/default")


def test_streamed_variant(stream_wav) -> None:
    if not (MODEL / "model.json").is_file():
        pytest.skip("no model in models/default")
    row = measure(
        f"openkws@{MODEL}", 3, str(stream_wav), seconds=3.0, reps=1, model_dir=None, add=False, chunk_ms=100
    )
    assert row["system"] == f"openkws@{MODEL}" and row["model"] == str(MODEL) and row["chunk_ms"] == 100
    assert row["rtf"] > 0 and row["timer"] == "process CPU time"

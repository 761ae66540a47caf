"""The data layer's evaluation layout is read as documented in openkws.training.data.streams."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.datasets import find_data_root, length_groups, load_data_layer


def _csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * 16_000), np.float32), 16_000, subtype="PCM_16")


def _layout(root: Path) -> None:
    for cond in ("clean", "noisy"):
        _wav(root / "negatives" / cond / "neg_00.wav", 2.0)
    _csv(root / "negatives" / "manifest.csv", [
        {"path": "clean/neg_00.wav", "condition": "clean", "noise": "none", "snr_db": "", "duration": "2.00", "sentences": "3"},
        {"path": "noisy/neg_00.wav", "condition": "noisy", "noise": "pink", "snr_db": "20", "duration": "2.00", "sentences": "3"},
    ])  # fmt: skip
    _wav(root / "streams" / "stream_00.wav", 3.0)
    _csv(
        root / "streams" / "manifest.csv",
        [
            {
                "path": "stream_00.wav",
                "background": "speech",
                "snr_db": "0",
                "duration": "3.00",
                "keywords": "2",
            }
        ],
    )
    _csv(root / "streams" / "ground_truth.csv", [
        {"stream": "stream_00.wav", "keyword": "penguin", "start": "1.500", "end": "2.000", "voice": "piper:joe", "snr_db": "0", "background": "speech"},
        {"stream": "stream_00.wav", "keyword": "alexa", "start": "0.200", "end": "0.700", "voice": "flite:awb", "snr_db": "0", "background": "speech"},
    ])  # fmt: skip


def test_reads_the_data_layer_layout(tmp_path: Path) -> None:
    _layout(tmp_path / "eval")
    assert find_data_root([tmp_path / "missing", tmp_path / "eval"]) == tmp_path / "eval"
    data = load_data_layer(tmp_path / "eval", negatives=("noisy",))
    assert data is not None and data.source == "data-layer"
    kinds = [(s.name, s.kind) for s in data.streams]
    assert kinds == [("negatives/noisy/neg_00.wav", "negative"), ("streams/stream_00.wav", "positive")]
    pos = data.streams[1]
    assert [o.keyword for o in pos.occurrences] == ["alexa", "penguin"]  # sorted by time
    assert pos.snr_db == 0.0 and pos.audio().shape == (48_000,)
    assert "flite:awb" not in data.template_voices[:1] or len(data.template_voices) == 4
    assert len(data.set_b) == 50 and data.set_a[0] == "alexa"
    assert load_data_layer(tmp_path / "eval").negative_hours * 3600 == 4.0  # both conditions


def test_missing_layout_is_none(tmp_path: Path) -> None:
    assert load_data_layer(tmp_path) is None and find_data_root([tmp_path]) is None


def test_length_groups() -> None:
    assert length_groups(["a", "b c", "d", "e f g h"]) == {
        "1 word": ["a", "d"],
        "2 words": ["b c"],
        "4 words": ["e f g h"],
    }

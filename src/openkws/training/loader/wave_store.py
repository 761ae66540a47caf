"""Waveform store: a split's audio in memory (int16), for on-the-fly augmentation (log-mel front-end,
whose features are cheap enough to compute per draw)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.engine.windows import speech_span
from openkws.training.data.audio import read_wav
from openkws.training.loader.clips import Clip
from openkws.training.loader.feature_cache import manifest_digest


@dataclass
class WaveStore:
    """Waveforms of a split in memory (int16), for on-the-fly augmentation (logmel front-end)."""

    clips: list[Clip]
    waves: list[np.ndarray]
    spans: np.ndarray

    def clean_spans(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in self.spans]


def build_wave_store(clips: Sequence[Clip], cache_root: Path, progress: bool = True) -> WaveStore:
    clips = list(clips)
    path = Path(cache_root) / f"waves-{manifest_digest(clips)}.npz"
    if path.is_file():
        with np.load(path) as z:
            # z["audio"] reads (and copies) the whole array on every access: read it once, or each
            # clip's view pins its own full copy (30k clips -> OOM).
            audio, off, spans_ = z["audio"], z["offsets"], z["spans"]
        waves = [audio[off[i] : off[i + 1]] for i in range(len(clips))]
        return WaveStore(clips, waves, spans_)
    waves, spans = [], []
    for c in tqdm(clips, desc="waveforms", unit="clip", disable=not progress):
        w = read_wav(c.path)
        spans.append(speech_span(w))
        waves.append(np.clip(w * 32767.0, -32768, 32767).astype(np.int16))
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in waves])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(waves), offsets=offsets, spans=np.array(spans, np.int64))
    os.replace(tmp, path)
    return WaveStore(clips, waves, np.array(spans, np.int64))

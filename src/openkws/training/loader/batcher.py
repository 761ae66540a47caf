"""Batcher: clip indices -> a :class:`Batch` of keyword windows (either front-end), with the
batch's text proxies' phoneme ids and, when configured, background windows and their masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import crop_window, keyword_window
from openkws.text import load_inventory
from openkws.training.loader.background import crop, negative_mask
from openkws.training.loader.feature_cache import FeatureStore
from openkws.training.loader.renditions import Augment, augmented_padded, make_augmenter, pad_with_context
from openkws.training.loader.wave_store import WaveStore
from openkws.training.nets.frontend import feature_extractor

if TYPE_CHECKING:
    from openkws.engine.encoders import FeatureExtractor


@dataclass
class Batch:
    features: np.ndarray  # [B, T, F] float32 (zero padded)
    lengths: np.ndarray  # [B]
    labels: np.ndarray  # [B] index into text_ids (batch-local class)
    word_ids: np.ndarray  # [B] global training-vocabulary class id (SphereFace2)
    text_ids: np.ndarray  # [K, L] int64 phoneme ids (zero padded)
    text_lengths: np.ndarray  # [K]
    background: np.ndarray | None = None  # [N, T', F] windows holding no keyword of the batch
    background_lengths: np.ndarray | None = None  # [N]
    background_mask: np.ndarray | None = None  # [N, K] bool: window n is a negative for class k
    extras: dict[str, object] = field(default_factory=dict)


def pad_stack(arrays: Sequence[np.ndarray], dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(a) for a in arrays], np.int64)
    t = int(lengths.max()) if len(lengths) else 0
    shape = (len(arrays), t, *arrays[0].shape[1:]) if arrays else (0, 0)
    out = np.zeros(shape, dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


class WindowBatcher:
    """Turns clip indices into :class:`Batch` es of keyword windows, for either front-end."""

    def __init__(
        self,
        store: FeatureStore | WaveStore,
        frontend: str,
        windows: tuple[int, ...],
        class_id: dict[tuple[int, ...], int],
        train: bool,
        seed: int = 0,
        frame_mask_prob: float = 0.0,
        max_mask_frames: int = 0,
        context_s: float = 0.6,
        augment_prob: float = 0.0,
        rir_dir: Path | None = None,
        background_fraction: float = 0.0,
        eval_variant: int = 0,
    ) -> None:
        self.store, self.frontend, self.windows = store, frontend, windows
        self.class_id, self.train = class_id, train
        self.rng = np.random.default_rng(seed)
        self.frame_mask_prob, self.max_mask_frames = frame_mask_prob, max_mask_frames
        self.context = int(round(context_s * SAMPLE_RATE))
        self.augment_prob = augment_prob
        self.rir_dir = rir_dir
        self.background_fraction = background_fraction
        self.eval_variant = eval_variant  # the rendition validation scores (0 = clean)
        self.boundary = load_inventory().encode(["|"])[0]
        self._fx: FeatureExtractor | None = None  # built on first use, in the loader's process
        self._aug: Augment | None = None

    # logmel: features on the fly from waveforms
    def _wave_features(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        assert isinstance(self.store, WaveStore)
        if self._fx is None:
            self._fx = feature_extractor(self.frontend, threads=1)
        fx = self._fx
        wave = self.store.waves[i].astype(np.float32) / 32767.0
        if self.train and self.augment_prob > 0 and self.rng.random() < self.augment_prob:
            if self._aug is None:
                self._aug = make_augmenter([str(c.path) for c in self.store.clips], self.rir_dir)
            j = int(self.rng.integers(len(self.store.waves)))
            other = self.store.waves[j].astype(np.float32) / 32767.0
            padded, span = augmented_padded(wave, self.context, self.rng, self._aug, other)
        else:
            s, e = self.store.spans[i]
            padded, span = (
                pad_with_context(wave, self.context),
                (int(s) + self.context, int(e) + self.context),
            )
        return fx.features(padded), span

    def clip_features(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        if isinstance(self.store, WaveStore):
            return self._wave_features(i)
        variants = self.store.feats[i]
        v = int(self.rng.integers(len(variants))) if self.train else min(self.eval_variant, len(variants) - 1)
        s, e = self.store.spans[i][v]
        return variants[v].astype(np.float32), (int(s), int(e))

    def window(self, i: int) -> np.ndarray:
        feats, span = self.clip_features(i)
        w = keyword_window(span, self.frontend, self.windows)
        start = crop_window(len(feats), span, w, self.frontend, self.rng if self.train else None)
        x = feats[start : start + w].copy()
        if self.train and self.max_mask_frames > 0 and self.rng.random() < self.frame_mask_prob:
            n = int(self.rng.integers(1, self.max_mask_frames + 1))
            s0 = int(self.rng.integers(0, max(1, len(x) - n + 1)))
            x[s0 : s0 + n] = x.mean(axis=0, keepdims=True)  # mask: the window's mean frame
        return x

    def background_windows(
        self, indices: Sequence[int], classes: list[tuple[int, ...]], window: int
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """``background_fraction x len(indices)`` windows of ``window`` frames holding no keyword:
        half partials of the batch's own clips (where cached), the rest running speech."""
        store = self.store
        n = round(self.background_fraction * len(indices))
        if n == 0 or not isinstance(store, FeatureStore) or not (store.background or any(store.partials)):
            return [], np.zeros((0, len(classes)), bool)
        with_partial = [i for i in indices if store.partials and store.partials[i] is not None]
        windows: list[np.ndarray] = []
        sources: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = []
        for k in range(n):
            if with_partial and (k % 2 == 0 or not store.background):
                i = with_partial[int(self.rng.integers(len(with_partial)))]
                feats = store.partials[i]
                own = store.clips[i].phoneme_ids
                sources.append((own, own))
            else:
                j = int(self.rng.integers(len(store.background)))
                feats = store.background[j]
                sources.append((store.background_ids[j], None))
            assert feats is not None
            windows.append(crop(feats, window, self.rng).astype(np.float32))
        return windows, negative_mask(sources, classes, self.boundary)

    def __call__(self, indices: Sequence[int]) -> Batch:
        clips = self.store.clips
        keys: dict[tuple[int, ...], int] = {}
        text_ids: list[np.ndarray] = []
        labels = []
        for i in indices:
            key = clips[i].phoneme_ids
            if key not in keys:
                keys[key] = len(keys)
                text_ids.append(np.array(key, np.int64))
            labels.append(keys[key])
        wins = [self.window(i) for i in indices]
        feats, lengths = pad_stack(wins)
        tids, tlen = pad_stack(text_ids, np.int64)
        bg, bg_len, bg_mask = None, None, None
        if self.train and self.background_fraction > 0:
            common = max(set(len(w) for w in wins), key=[len(w) for w in wins].count)
            bg_wins, bg_mask = self.background_windows(indices, list(keys), common)
            if bg_wins:
                bg, bg_len = pad_stack(bg_wins)
            else:
                bg_mask = None
        return Batch(
            features=feats,
            lengths=lengths,
            labels=np.array(labels, np.int64),
            word_ids=np.array([self.class_id.get(clips[i].phoneme_ids, -1) for i in indices], np.int64),
            text_ids=tids,
            text_lengths=tlen,
            background=bg,
            background_lengths=bg_len,
            background_mask=bg_mask,
        )

"""Validation during training: window embeddings exactly as the detector computes them, and
easy/hard pair EER on the validation clips (held-out voices; clean or one augmented rendition)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from openkws.training.evaluate import make_pairs, summary
from openkws.training.loader.batcher import WindowBatcher
from openkws.training.loader.feature_cache import FeatureStore
from openkws.training.loader.wave_store import WaveStore
from openkws.training.nets.kws_model import KWSModel
from openkws.training.nets.windows import window_positions

VAL_CHUNK = 32  # validation clips per batched forward


@torch.no_grad()
def window_embeddings(model: KWSModel, feats: np.ndarray, device: torch.device) -> torch.Tensor:
    """Every detector window of one clip -> [num_windows, D] (same windows as the service/eval)."""
    return batch_window_embeddings(model, [feats], device)[0]


@torch.no_grad()
def batch_window_embeddings(
    model: KWSModel, clips: list[np.ndarray], device: torch.device
) -> list[torch.Tensor]:
    """:func:`window_embeddings` for several clips with one ``frames`` call (zero padding at the end
    of a clip never reaches its valid frames) and one ``pool`` call."""
    ctx = model.context_frames
    x = torch.zeros(len(clips), max(len(f) for f in clips), model.feature_dim)
    for i, f in enumerate(clips):
        x[i, : len(f)] = torch.from_numpy(np.asarray(f, np.float32))
    frames = model.frames(x.to(device))
    rows: list[tuple[int, int, int]] = []  # (clip, start, n output frames)
    counts = []
    for i, f in enumerate(clips):
        pos = window_positions(len(f), model.windows, model.window_stride)
        rows += [(i, s, w - ctx) for s, w in pos]
        counts.append(len(pos))
    tmax = max(n for _, _, n in rows)
    batch = torch.zeros(len(rows), tmax, frames.shape[2], device=device)
    mask = torch.zeros(len(rows), tmax, device=device)
    for k, (i, s, n) in enumerate(rows):
        batch[k, :n] = frames[i, s : s + n]
        mask[k, :n] = 1
    return list(torch.split(model.pool(batch, mask), counts))


@torch.no_grad()
def validate(
    model: KWSModel,
    store: FeatureStore | WaveStore,
    batcher: WindowBatcher,
    max_clips: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, float]:
    """EER/AUC/AP on dev pairs (own text vs random and phonetically closest other text)."""
    model.eval()
    clips = store.clips
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(clips), min(max_clips, len(clips)), replace=False).tolist())
    sub = [clips[i] for i in idx]
    texts = [c.text for c in sub]
    phon = {c.text: c.phoneme_ids for c in sub}
    if len(set(texts)) < 2:
        return {}
    pairs = make_pairs(texts, phon, seed)
    vocab = sorted(phon)
    ids = [torch.tensor(phon[t]) for t in vocab]
    lengths = torch.tensor([len(i) for i in ids])
    padded = nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device)
    proxies = dict(zip(vocab, model.text(padded, lengths.to(device)), strict=True))
    emb: dict[int, torch.Tensor] = {}
    needed = sorted({p.clip for p in pairs})
    for c0 in range(0, len(needed), VAL_CHUNK):
        chunk = needed[c0 : c0 + VAL_CHUNK]
        feats = [batcher.clip_features(idx[c])[0] for c in chunk]
        emb.update(zip(chunk, batch_window_embeddings(model, feats, device), strict=True))
    scores = np.array([float((emb[p.clip] @ proxies[p.text]).max()) for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    labels = np.array([p.label for p in pairs])
    out: dict[str, float] = {}
    for neg in ("easy", "hard"):
        sel = (kinds == "positive") | (kinds == neg)
        if (kinds == neg).any():
            m = summary(scores[sel], labels[sel])
            out.update({f"val_{neg}_eer": m["eer"], f"val_{neg}_auc": m["auc"], f"val_{neg}_ap": m["ap"]})
    return out

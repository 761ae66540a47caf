"""The stream set in memory, and one training batch of windows cut the way the engine cuts them.

A batch is a handful of targets with all their streams (the positive and its trap). From each
stream it keeps every window ending within ``near_s`` of the spoken phrase's end (positives, the
partial windows before it and the late windows after it) plus ``random_windows`` others.

A window ``(s, t)`` of ``W = t - s + 1`` feature frames pools acoustic frames ``s .. t - context``
of the stream's frame sequence: the frame encoder is local (valid convolutions), so encoding the
whole stream once and pooling slices equals encoding each window crop, at a fraction of the cost.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import WindowPlan
from openkws.training.stream_training.labels import is_keyword_end, stream_windows, window_end_samples
from openkws.training.stream_training.phrases import StreamItem
from openkws.training.stream_training.render import load_shards

POSITIVE_KINDS = ("pos", "repeat")  # streams that say their target


def said(item: StreamItem) -> tuple[str, ...]:
    """Phrases whose positive window ends where this stream's spoken phrase ends."""
    return (
        (item.spoken, item.target)
        if item.kind in POSITIVE_KINDS and item.spoken != item.target
        else (item.spoken,)
    )


def full_text(item: StreamItem) -> str:
    return " ".join(x for x in (item.left, item.spoken, item.right) if x)


@dataclass
class StreamSet:
    features: list[np.ndarray]  # float16 [T, F] per stream
    phrase_end: np.ndarray  # [S] samples
    items: list[StreamItem]

    @classmethod
    def load(cls, root: Path) -> StreamSet:
        feats: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        items: list[StreamItem] = []
        for sh in load_shards(root):
            off = sh["offsets"]
            feats += [sh["features"][off[i] : off[i + 1]] for i in range(len(off) - 1)]
            ends.append(sh["phrase_end"])
            items += sh["items"]
        if not items:
            raise FileNotFoundError(f"no finished shards under {root}: run `openkws train stream data` first")
        return cls(feats, np.concatenate(ends), items)

    def __len__(self) -> int:
        return len(self.items)

    def by_target(self) -> dict[str, list[int]]:
        """Targets that have at least one positive stream -> all their streams."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(self.items):
            groups[it.target].append(i)
        return {t: ix for t, ix in groups.items() if any(self.items[i].kind in POSITIVE_KINDS for i in ix)}


@dataclass
class WindowBatch:
    streams: list[int]  # dataset indices, batch order
    features: torch.Tensor  # [B, Tmax, F] float32
    stream_of: torch.Tensor  # [N] batch stream of each window
    frame_index: torch.Tensor  # [N, L] acoustic frame indices (0 where masked)
    frame_mask: torch.Tensor  # [N, L]
    end_sample: np.ndarray  # [N]
    positive: np.ndarray  # [N] window is a keyword-end window of its stream's spoken phrase


def cut_windows(
    data: StreamSet,
    streams: list[int],
    plan: WindowPlan,
    hop: int,
    receptive: int,
    rng: np.random.Generator | None,
    near_s: float = 0.5,
    random_windows: int = 10_000,
) -> WindowBatch:
    """Windows of ``streams`` (all of them when ``rng`` is None, for validation)."""
    lengths = [len(data.features[i]) for i in streams]
    feats = np.zeros((len(streams), max(lengths), data.features[streams[0]].shape[1]), np.float32)
    for b, i in enumerate(streams):
        feats[b, : lengths[b]] = data.features[i]
    rows: list[tuple[int, int, int]] = []
    ends: list[np.ndarray] = []
    pos: list[np.ndarray] = []
    for b, i in enumerate(streams):
        win = stream_windows(plan, lengths[b])
        end = window_end_samples(win[:, 1], hop, receptive)
        if rng is not None:
            near = np.abs(end - data.phrase_end[i]) <= near_s * SAMPLE_RATE
            others = np.flatnonzero(~near)
            extra = rng.choice(others, size=min(random_windows, len(others)), replace=False)
            keep = np.sort(np.concatenate([np.flatnonzero(near), extra]))
            win, end = win[keep], end[keep]
        rows += [(b, int(s), int(t)) for s, t in win]
        ends.append(end)
        pos.append(is_keyword_end(end, int(data.phrase_end[i])))
    ctx = plan.context
    n_frames = [t - s + 1 - ctx for _, s, t in rows]
    width = max(n_frames)
    index = np.zeros((len(rows), width), np.int64)
    mask = np.zeros((len(rows), width), np.float32)
    for r, ((_, s, _), n) in enumerate(zip(rows, n_frames, strict=True)):
        index[r, :n] = np.arange(s, s + n)
        mask[r, :n] = 1.0
    return WindowBatch(
        streams=list(streams),
        features=torch.from_numpy(feats),
        stream_of=torch.tensor([b for b, _, _ in rows]),
        frame_index=torch.from_numpy(index),
        frame_mask=torch.from_numpy(mask),
        end_sample=np.concatenate(ends),
        positive=np.concatenate(pos),
    )


def pool_windows(model: torch.nn.Module, wb: WindowBatch, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Window embeddings [N, D]: the frame encoder once per stream, then the pooling head's
    attentive statistics for every window from prefix sums over the stream's frames.

    Attentive pooling is a channel-wise softmax over the window's frames, so its sums are
    differences of per-stream cumulative sums of ``exp(logit)``, ``exp(logit)·h`` and
    ``exp(logit)·h²`` (in float64: one shift per stream and channel, no underflow). This equals
    :meth:`AcousticPool.stats` on each window's frames, without materialising [N, L, 2C] (whose
    gather dominated the backward pass). ``frames``: ``model.frames(wb.features)`` when the caller
    already has them."""
    frames = model.frames(wb.features) if frames is None else frames  # [B, T', 2C]
    pool = model.pool
    c = pool.channels
    h, logits = frames[..., :c].double(), frames[..., c:].double()
    e = torch.exp(logits - logits.max(dim=1, keepdim=True).values)

    def prefix(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), torch.cumsum(x, dim=1)], dim=1)

    b = wb.stream_of
    s = wb.frame_index[:, 0]
    t = s + wb.frame_mask.sum(dim=1).long()
    sums = [p[b, t] - p[b, s] for p in (prefix(e), prefix(e * h), prefix(e * h * h))]
    z = sums[0].clamp_min(1e-300)
    mean = sums[1] / z
    var = sums[2] / z - mean * mean
    stats = torch.cat([mean, torch.sqrt(var.clamp_min(1e-5))], dim=-1).float()
    return torch.nn.functional.normalize(pool.proj(pool.bn(stats)), dim=-1)


def pool_windows_reference(model: torch.nn.Module, wb: WindowBatch) -> torch.Tensor:
    """The plain gather-then-pool form of :func:`pool_windows` (tests compare the two)."""
    frames = model.frames(wb.features)
    picked = frames[wb.stream_of[:, None], wb.frame_index]  # [N, L, 2C]
    pooled: torch.Tensor = model.pool(picked, wb.frame_mask)  # nn.Module calls return Any
    return pooled

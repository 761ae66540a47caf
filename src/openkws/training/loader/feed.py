"""How a trainer consumes batches: one epoch's :class:`Batch` es (in DataLoader workers when asked)
and the tensors the objective takes from each."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch

from openkws.training.loader.batcher import Batch, WindowBatcher
from openkws.training.loader.sampler import KeywordBatches


def batch_to_tensors(b: Batch, device: torch.device) -> tuple[torch.Tensor | None, ...]:
    """The objective's inputs; background windows (if any) follow the keyword windows in one tensor."""
    feats, lengths, mask = b.features, b.lengths, None
    if b.background is not None and b.background_lengths is not None and b.background_mask is not None:
        t = max(feats.shape[1], b.background.shape[1])
        both = np.zeros((len(feats) + len(b.background), t, feats.shape[2]), np.float32)
        both[: len(feats), : feats.shape[1]] = feats
        both[len(feats) :, : b.background.shape[1]] = b.background
        feats, lengths = both, np.concatenate([lengths, b.background_lengths])
        mask = torch.from_numpy(b.background_mask).to(device)
    return (
        torch.from_numpy(feats).to(device),
        torch.from_numpy(lengths).to(device),
        torch.from_numpy(b.labels).to(device),
        torch.from_numpy(b.word_ids).to(device),
        torch.from_numpy(b.text_ids).to(device),
        torch.from_numpy(b.text_lengths).to(device),
        mask,
    )


class _Indices(torch.utils.data.Dataset[int]):
    def __getitem__(self, i: int) -> int:
        return i

    def __len__(self) -> int:  # pragma: no cover - batch_sampler drives the loader
        return 1 << 62


def _reseed_worker(batcher: WindowBatcher, _worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    batcher.rng = np.random.default_rng(info.seed if info is not None else None)


def batch_iterator(sampler: KeywordBatches, batcher: WindowBatcher, workers: int) -> Iterator[Batch]:
    """Batches of one epoch; with ``workers > 0`` assembled in DataLoader worker processes (each with
    its own random stream), which is what on-the-fly log-mel augmentation needs to keep up."""
    if workers == 0:
        return (batcher(indices) for indices in sampler)
    loader = torch.utils.data.DataLoader(
        _Indices(),
        batch_sampler=sampler,
        collate_fn=batcher,
        num_workers=workers,
        worker_init_fn=functools.partial(_reseed_worker, batcher),
        prefetch_factor=2,
    )
    return iter(loader)

"""Batch sampler: K keyword classes x M utterances per batch, confusable classes paired, DDP-sharded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from openkws.training.loader.clips import Clip
from openkws.training.loader.neighbours import confusable_neighbours


class KeywordBatches:
    """K keywords x M utterances per batch. A keyword class is a *pronunciation* (phoneme ids), so
    homophones ("two", "too") share a class instead of being each other's negatives.

    ``hard_fraction`` of the batch's classes come in confusable pairs (one phoneme edit apart; see
    :func:`confusable_neighbours`), so the losses see the hard negatives the hard-pair evaluation
    asks about, not only random ones.

    Sharding for DDP: each rank takes every ``world``-th batch of one shared, seeded class order,
    so ranks see disjoint seed classes (DistributedSampler-style) and equal numbers of batches.
    With :meth:`set_buckets`, batches hold classes of one window length.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        k: int,
        m: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        batches_per_epoch: int | None = None,
        hard_fraction: float = 0.0,
    ) -> None:
        by_key: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(clips):
            by_key.setdefault(c.phoneme_ids, []).append(i)
        self.keys = sorted(key for key, idx in by_key.items() if len(idx) >= m)
        if len(self.keys) < 2:
            raise ValueError(f"need at least 2 keywords with >= {m} clips each; got {len(self.keys)}")
        self.by_key = by_key
        self.class_id = {key: i for i, key in enumerate(self.keys)}
        self.k, self.m = min(k, len(self.keys)), m
        self.seed, self.rank, self.world = seed, rank, world
        # one epoch ~ every class once as a seed (confusable partners come on top)
        self.batches_per_epoch = batches_per_epoch or max(
            1, int(len(self.keys) / (1 + hard_fraction)) // self.k // world
        )
        self.hard_fraction = hard_fraction
        self.neighbours = confusable_neighbours(self.keys) if hard_fraction > 0 else {}
        if self.neighbours:
            usable = set(self.keys)
            self.neighbours = {key: [n for n in v if n in usable] for key, v in self.neighbours.items()}
        self.bucket: dict[tuple[int, ...], int] = {}
        self.epoch = 0

    @property
    def words(self) -> list[tuple[int, ...]]:
        return self.keys

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _classes(self, seeds: list[tuple[int, ...]], rng: np.random.Generator) -> list[tuple[int, ...]]:
        chosen: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        pending = list(seeds)
        while len(chosen) < self.k and pending:
            key = pending.pop(0)
            if key in seen:
                continue
            chosen.append(key)
            seen.add(key)
            nbs = [n for n in self.neighbours.get(key, ()) if n not in seen]
            if nbs and len(chosen) < self.k and rng.random() < self.hard_fraction:
                n = nbs[int(rng.integers(len(nbs)))]
                chosen.append(n)
                seen.add(n)
        while len(chosen) < self.k:  # seeds exhausted by duplicates: top up at random
            key = self.keys[int(rng.integers(len(self.keys)))]
            if key not in seen:
                chosen.append(key)
                seen.add(key)
        return chosen

    def set_buckets(self, clip_bucket: Sequence[int]) -> None:
        """Group batches by window length: ``clip_bucket[i]`` is clip i's window (frames). A class's
        bucket is its clips' most common window. Same-length batches waste no compute on padding
        and make length a useless cue between a batch's negatives."""
        self.bucket = {}
        for key in self.keys:
            vals = [clip_bucket[i] for i in self.by_key[key]]
            self.bucket[key] = max(set(vals), key=vals.count)
        if self.neighbours:  # keep confusable partners inside the bucket
            self.neighbours = {
                k: [n for n in v if self.bucket[n] == self.bucket[k]] for k, v in self.neighbours.items()
            }

    def _seed_groups(self, rng: np.random.Generator) -> list[list[tuple[int, ...]]]:
        """One epoch of seed-class groups (K each), bucketed by window length when buckets are set."""
        order = [self.keys[i] for i in rng.permutation(len(self.keys))]
        if not self.bucket:
            return [order[i : i + self.k] for i in range(0, len(order) - self.k + 1, self.k)]
        by_bucket: dict[int, list[tuple[int, ...]]] = {}
        for key in order:
            by_bucket.setdefault(self.bucket[key], []).append(key)
        groups, rest = [], []
        for b in sorted(by_bucket):
            keys = by_bucket[b]
            n_full = len(keys) // self.k
            groups += [keys[i * self.k : (i + 1) * self.k] for i in range(n_full)]
            rest += keys[n_full * self.k :]
        groups += [rest[i : i + self.k] for i in range(0, len(rest) - self.k + 1, self.k)]  # mixed leftovers
        return [groups[i] for i in rng.permutation(len(groups))]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[list[tuple[int, ...]]] = []
        needed = self.batches_per_epoch * self.world
        while len(groups) < needed:
            groups += self._seed_groups(rng) or [
                [self.keys[i] for i in rng.permutation(len(self.keys))[: self.k]]
            ]
        for b in range(self.batches_per_epoch):
            seeds = groups[b * self.world + self.rank]
            batch = []
            for key in self._classes(seeds, rng):
                pool = self.by_key[key]
                batch.extend(int(i) for i in rng.choice(pool, self.m, replace=False))
            yield batch

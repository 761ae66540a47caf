"""Checkpoint choice on held-out voices: stream misses at zero false accepts, and the tail share.

Every window of every validation stream is scored against every phrase said in the set. For a
phrase ``q``:

- its threshold is its highest score on windows of streams that do not say ``q`` (traps of ``q``
  included): zero false accepts on this set, the stream operating point in miniature;
- a stream that says ``q`` is a hit when a window ending between 0.3 s before and 0.6 s after the
  phrase's end passes that threshold;
- the *tail share* is the fraction of those negative windows scoring above the median of ``q``'s
  positive peaks: how much of the background still sits where keywords score.

Synthetic speech only (held-out TTS voices): these figures choose checkpoints; recorded speech never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import WindowPlan
from openkws.training.stream_training.batches import StreamSet, cut_windows, full_text, pool_windows, said
from openkws.training.stream_training.labels import contains_phrase

HIT_BEFORE_S, HIT_AFTER_S = 0.3, 0.6


@dataclass(frozen=True)
class ValResult:
    frr: float  # positive streams missed at each phrase's zero-false-accept threshold
    tail_share: float
    phrases: int

    def as_dict(self) -> dict[str, float]:
        return {"val_frr": self.frr, "val_tail_share": self.tail_share, "val_phrases": float(self.phrases)}


@torch.no_grad()
def embed_streams(
    model: torch.nn.Module, data: StreamSet, streams: list[int], plan: WindowPlan, hop: int, receptive: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [N, D], stream index [N], window end sample [N]) of every window, 16 streams at a time."""
    embs, owners, ends = [], [], []
    for k in range(0, len(streams), 16):
        chunk = streams[k : k + 16]
        wb = cut_windows(data, chunk, plan, hop, receptive, rng=None)
        embs.append(pool_windows(model, wb).numpy())
        owners.append(np.asarray(chunk)[wb.stream_of.numpy()])
        ends.append(wb.end_sample)
    return np.concatenate(embs), np.concatenate(owners), np.concatenate(ends)


def stream_scores(
    emb: np.ndarray,
    owner: np.ndarray,
    end: np.ndarray,
    proxies: np.ndarray,
    phrases: list[str],
    data: StreamSet,
) -> ValResult:
    return frr_at_zero_fa(emb @ proxies.T, owner, end, phrases, data)


def frr_at_zero_fa(
    scores: np.ndarray, owner: np.ndarray, end: np.ndarray, phrases: list[str], data: StreamSet
) -> ValResult:
    """The figures above for any score of each window row [N] against each phrase [Q] (stage 1
    alone, or combined with the verifier)."""
    uniq, row = np.unique(owner, return_inverse=True)
    texts = [full_text(data.items[int(i)]) for i in uniq]
    misses, total, tails = 0, 0, []
    for q, phrase in enumerate(phrases):
        sayers = [int(i) for i in uniq if phrase in said(data.items[int(i)])]
        clean = np.array([not contains_phrase(t, phrase) for t in texts])[row]
        if not sayers or not clean.any():
            continue
        threshold = scores[clean, q].max()
        peaks = []
        for i in sayers:
            pe = data.phrase_end[i]
            near = (
                (owner == i)
                & (end >= pe - HIT_BEFORE_S * SAMPLE_RATE)
                & (end <= pe + HIT_AFTER_S * SAMPLE_RATE)
            )
            if near.any():
                peaks.append(scores[near, q].max())
        if not peaks:
            continue
        total += len(peaks)
        misses += int(sum(p <= threshold for p in peaks))
        tails.append(float((scores[clean, q] > np.median(peaks)).mean()))
    if total == 0:
        raise ValueError("validation set has no phrase with both a positive stream and negatives")
    return ValResult(misses / total, float(np.mean(tails)), len(tails))

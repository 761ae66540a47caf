"""Row V of issue 21: a second, phoneme-level look at stage-1 candidates.

A candidate is a stream position (the feature frame ``t`` where the engine's windows end) whose
stage-1 score against a phrase passes a low candidate threshold. The verifier sees the acoustic
frames of the longest window ending at ``t`` and the phrase's phonemes, lets each phoneme attend
over the frames (cross-attention, as PhonMatchNet does), scores every phoneme's match and the
whole window, and adds the stage-1 score as one input.

It reuses the stage-1 model's trained phoneme encoder and frame projection (frozen: they were
trained to align phonemes with frames by the ADML loss) and learns only the matcher on top.

Example:
    >>> import torch
    >>> m = Matcher(key_dim=16, dim=8, heads=2, max_frames=6)
    >>> keys, phn = torch.randn(3, 6, 16), torch.randn(3, 4, 16)
    >>> window, per_phone = m(keys, torch.ones(3, 6), phn, torch.ones(3, 4), torch.rand(3))
    >>> tuple(window.shape), tuple(per_phone.shape)
    ((3,), (3, 4))
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

MASK_NEG = -1e4


class Matcher(nn.Module):
    """keys [B, T, K] (frames, oldest first, right-aligned at the window's end), phonemes
    [B, L, K], their masks, the stage-1 score [B] -> (window logit [B], phoneme logits [B, L])."""

    def __init__(self, key_dim: int, dim: int = 128, heads: int = 4, max_frames: int = 32) -> None:
        super().__init__()
        self.q = nn.Linear(key_dim, dim)
        self.kv = nn.Linear(key_dim, dim)
        self.pos = nn.Parameter(torch.zeros(max_frames, dim))  # position counted back from the end
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.phone = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.window = nn.Sequential(nn.Linear(dim + 3, 64), nn.GELU(), nn.Linear(64, 1))

    def forward(
        self,
        keys: torch.Tensor,
        key_mask: torch.Tensor,
        phonemes: torch.Tensor,
        phone_mask: torch.Tensor,
        stage1: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = keys.shape[1]
        audio = self.kv(keys) + self.pos[:t].flip(0)
        query = self.q(phonemes)
        aligned, _ = self.attn(query, audio, audio, key_padding_mask=key_mask < 0.5, need_weights=False)
        hidden = torch.cat([query, aligned, query * aligned], dim=-1)
        per_phone = self.phone(hidden).squeeze(-1)  # [B, L]
        m = phone_mask
        n = m.sum(1).clamp_min(1.0)
        pooled = (aligned * m[..., None]).sum(1) / n[:, None]
        worst = torch.where(m > 0, per_phone, torch.full_like(per_phone, -MASK_NEG)).min(1).values
        mean = (per_phone * m).sum(1) / n
        summary = torch.cat([pooled, worst[:, None], mean[:, None], stage1[:, None]], dim=-1)
        return self.window(summary).squeeze(-1), per_phone


def phone_labels(target: Sequence[int], spoken: Sequence[int]) -> np.ndarray:
    """1 for each phoneme of ``target`` that the spoken phrase says in the same order (a longest
    matching alignment), 0 for the ones it changes or lacks: "turn off" said for "turn on" marks
    the vowel and the final consonant of "on" as mismatched.

    >>> phone_labels([1, 2, 3, 4], [1, 2, 9, 4]).tolist()
    [1.0, 1.0, 0.0, 1.0]
    >>> phone_labels([1, 2, 3], [1, 2]).tolist()
    [1.0, 1.0, 0.0]
    """
    out = np.zeros(len(target), np.float32)
    for block in difflib.SequenceMatcher(
        None, list(target), list(spoken), autojunk=False
    ).get_matching_blocks():
        out[block.a : block.a + block.size] = 1.0
    return out


def window_keys(keys: np.ndarray, end_frame: int, longest: int, context: int) -> np.ndarray:
    """The acoustic frames pooled by the longest window ending at feature frame ``end_frame``:
    ``s .. end_frame - context`` with ``s = end_frame - longest + 1`` (clipped at the stream start).

    >>> window_keys(np.arange(10)[:, None], end_frame=8, longest=5, context=2)[:, 0].tolist()
    [4, 5, 6]
    """
    s = max(0, end_frame - longest + 1)
    return keys[s : end_frame - context + 1]

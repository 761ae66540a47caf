"""Phoneme-level cross-attention (training only): text phonemes query audio frames.

``forward(text_phn [B, L, D], audio_frames [B, T, D], text_mask [B, L], audio_mask [B, T])``
returns the audio aligned to each phoneme [B, L, D] and the affinity ``A`` [B, L, T]
(rows sum to 1 over valid frames), as in ADML section 3.1.

Example:
    >>> import torch
    >>> xa = PhonemeCrossAttention(8, heads=2)
    >>> aligned, affinity = xa(torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.ones(2, 3), torch.ones(2, 5))
    >>> tuple(aligned.shape), tuple(affinity.shape)
    ((2, 3, 8), (2, 3, 5))
    >>> bool(torch.allclose(affinity.sum(-1), torch.ones(2, 3)))
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from openkws.training.nets.ecapa import MASK_NEG


class PhonemeCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, text_phn: torch.Tensor, audio: torch.Tensor, text_mask: torch.Tensor, audio_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = text_phn.shape
        t = audio.shape[1]
        h, dh = self.heads, d // self.heads
        q = self.q(text_phn).view(b, n, h, dh).transpose(1, 2)
        k = self.k(audio).view(b, t, h, dh).transpose(1, 2)
        v = self.v(audio).view(b, t, h, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, L, T]
        scores = scores + (1.0 - audio_mask[:, None, None, :]) * MASK_NEG
        att = torch.softmax(scores, dim=-1)
        aligned = (att @ v).transpose(1, 2).reshape(b, n, d)
        aligned = self.out(aligned) * text_mask.unsqueeze(-1)
        return aligned, att.mean(dim=1)

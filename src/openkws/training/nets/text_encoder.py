"""Text encoder: phoneme ids -> embedding -> 2-layer bi-LSTM -> phoneme-level [B, L, D] -> proxy [B, D].

The bidirectional LSTM is built from two unidirectional ``nn.LSTM`` per layer, without packing:

* the forward direction is causal, so padding *after* a sequence never reaches its valid steps;
* the backward direction runs forward over each sequence reversed *within its own length*
  (a gather with index ``len-1-t`` for ``t < len``, identity on padding), then is un-reversed.

So padded batches give exactly the per-sequence result, and the exported ONNX graph (plain LSTM,
Gather, masked mean) has dynamic batch and length with no data-dependent Python control flow.

Example:
    >>> import torch
    >>> from openkws.training.config import TextConfig
    >>> enc = TextEncoder(vocab_size=42, cfg=TextConfig(embed_dim=16, hidden=8), embedding_dim=12).eval()
    >>> ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    >>> lengths = torch.tensor([3, 2])
    >>> tuple(enc(ids, lengths).shape)
    (2, 12)
    >>> alone = enc(ids[1:, :2], lengths[1:])
    >>> bool(torch.allclose(alone, enc(ids, lengths)[1:], atol=1e-6))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openkws.training.config import TextConfig


def length_mask(lengths: torch.Tensor, max_len: int | torch.Tensor) -> torch.Tensor:
    """[B] lengths -> [B, L] float mask (1 = valid)."""
    steps = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    return (steps < lengths.unsqueeze(1)).to(torch.float32)


def reverse_within_length(lengths: torch.Tensor, max_len: int | torch.Tensor) -> torch.Tensor:
    """[B, L] gather index that reverses each row's first ``len`` steps and keeps padding in place."""
    steps = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    lens = lengths.unsqueeze(1)
    return torch.where(steps < lens, lens - 1 - steps, steps)


class MaskedBiLSTM(nn.Module):
    """Pack-free bidirectional multi-layer LSTM: ``forward(x [B, L, E], lengths [B]) -> [B, L, 2H]``."""

    def __init__(self, input_dim: int, hidden: int, layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [input_dim] + [2 * hidden] * (layers - 1)
        self.fw = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.bw = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rev = reverse_within_length(lengths, x.shape[1]).unsqueeze(-1)
        for i, (fw, bw) in enumerate(zip(self.fw, self.bw, strict=True)):
            if i:
                x = self.dropout(x)
            f, _ = fw(x)
            xr = torch.gather(x, 1, rev.expand(-1, -1, x.shape[-1]))
            b, _ = bw(xr)
            b = torch.gather(b, 1, rev.expand(-1, -1, b.shape[-1]))
            x = torch.cat([f, b], dim=-1)
        return x


class TextEncoder(nn.Module):
    """``forward(phoneme_ids [B, L] int64, lengths [B] int64) -> proxy [B, D]`` (L2-normalised).

    ``phonemes(...)`` gives the phoneme-level embeddings [B, L, D] (not normalised) used as
    cross-attention queries and phoneme-level proxies; the proxy is their masked mean.
    """

    def __init__(self, vocab_size: int, cfg: TextConfig, embedding_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.lstm = MaskedBiLSTM(cfg.embed_dim, cfg.hidden, cfg.layers, cfg.dropout)
        self.proj = nn.Linear(2 * cfg.hidden, embedding_dim)

    def phonemes(self, phoneme_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(self.lstm(self.embed(phoneme_ids), lengths))

    @staticmethod
    def pool(phn: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m = length_mask(lengths, phn.shape[1]).unsqueeze(-1)
        return (phn * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, phoneme_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pool(self.phonemes(phoneme_ids, lengths), lengths), dim=-1)

"""Streaming ECAPA-TDNN, split into a frame-local part and a pooling part.

``AcousticFrames`` (exported as ``acoustic_frames``) uses only *valid* convolutions and a *local*
squeeze-excitation (an average over a fixed window instead of ECAPA's global mean), so output
frame ``t`` depends only on input frames ``[t, t + context_frames]``. A stream therefore computes
each frame once and reuses it for every overlapping window. Global statistics (ECAPA's
utterance-mean context in the attention, global SE) would make every frame depend on the window
and force recomputation per window; they are left out on purpose.

``AcousticPool`` (exported as ``acoustic_pool``) does masked attentive statistics pooling over the
frames of one window, then a linear projection and L2 normalisation.

Example:
    >>> import torch
    >>> from openkws.training.config import AcousticConfig
    >>> cfg = AcousticConfig(channels=32, mfa_channels=48, se_bottleneck=8, attention_hidden=8)
    >>> frames = AcousticFrames(96, cfg)
    >>> y = frames(torch.randn(2, 20, 96))
    >>> tuple(y.shape), cfg.context_frames
    ((2, 15, 96), 5)
    >>> pool = AcousticPool(cfg.frame_dim, cfg.mfa_channels, 16)
    >>> tuple(pool(y, torch.ones(2, 15)).shape)
    (2, 16)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openkws.training.config import AcousticConfig, BlockConfig

MASK_NEG = -1.0e4  # added to attention logits of padded frames (finite: stays exportable and NaN-free)


def _crop(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Drop ``left`` and ``right`` frames of [B, C, T] (static ints, so export-safe)."""
    t = x.shape[-1]
    return x[..., left : t - right] if right else x[..., left:]


def _split_context(ctx: int) -> tuple[int, int]:
    return ctx // 2, ctx - ctx // 2


class ConvBN(nn.Module):
    """Valid Conv1d -> ReLU -> BatchNorm (ECAPA's TDNN block order)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation)
        self.bn = nn.BatchNorm1d(cout)
        self.context = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2NetConv(nn.Module):
    """Res2Net hierarchy of valid convolutions over ``scale`` channel groups.

    Group 0 passes through; group i>0 is ``conv(x_i + y_{i-1})``. With valid convolutions the
    inputs are cropped to stay aligned, so the context is ``(scale-1) * (kernel-1) * dilation``.
    """

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        self.width = channels // scale
        self.step = (kernel - 1) * dilation
        self.convs = nn.ModuleList(ConvBN(self.width, self.width, kernel, dilation) for _ in range(scale - 1))
        self.context = (scale - 1) * self.step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.width, dim=1)
        total = self.context
        outs: list[torch.Tensor] = []
        y: torch.Tensor | None = None
        for i, conv in enumerate(self.convs):
            xi = groups[i + 1]
            consumed = i * self.step  # context already consumed by y
            if y is None:
                y = conv(xi)
            else:
                lo, hi = _split_context(consumed)
                y = conv(_crop(xi, lo, hi) + y)
            outs.append(y)
        # align every group to the final (shortest) length
        aligned = []
        for i, o in enumerate([groups[0], *outs]):
            have = 0 if i == 0 else i * self.step
            l0, r0 = _split_context(total)
            l1, r1 = _split_context(have)
            aligned.append(_crop(o, l0 - l1, r0 - r1))
        return torch.cat(aligned, dim=1)


class LocalSE(nn.Module):
    """Squeeze-excitation with a *local* squeeze: mean over ``window`` frames (valid avg-pool)."""

    def __init__(self, channels: int, bottleneck: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.fc1 = nn.Conv1d(channels, bottleneck, 1)
        self.fc2 = nn.Conv1d(bottleneck, channels, 1)
        self.context = window - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool1d(x, self.window, stride=1) if self.window > 1 else x
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        lo, hi = _split_context(self.context)
        return _crop(x, lo, hi) * g


class SERes2NetBlock(nn.Module):
    """1x1 ConvBN -> Res2Net -> 1x1 ConvBN -> local SE, plus a cropped residual."""

    def __init__(
        self, channels: int, scale: int, block: BlockConfig, se_window: int, se_bottleneck: int
    ) -> None:
        super().__init__()
        self.pre = ConvBN(channels, channels)
        self.res2 = Res2NetConv(channels, scale, block.kernel, block.dilation)
        self.post = ConvBN(channels, channels)
        self.se = LocalSE(channels, se_bottleneck, se_window)
        self.context = self.res2.context + self.se.context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.post(self.res2(self.pre(x))))
        lo, hi = _split_context(self.context)
        return y + _crop(x, lo, hi)


class AcousticFrames(nn.Module):
    """Frame-local ECAPA-TDNN: features [B, T, F] -> frames [B, T - context, 2 * mfa_channels].

    Each output frame is ``[values (C), attention logits (C)]``: the multi-layer feature
    aggregation (MFA) output and the channel-wise attention logits of attentive statistics pooling.
    """

    def __init__(self, feature_dim: int, cfg: AcousticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        # Per-dimension input normalisation (an affine map in eval): the speech embedding has values
        # of +-50 and the scaled log-mel an offset near 9 with a small spread.
        self.input_norm = nn.BatchNorm1d(feature_dim)
        self.front = ConvBN(feature_dim, c, cfg.front_kernel)
        self.blocks = nn.ModuleList(
            SERes2NetBlock(c, cfg.scale, b, cfg.se_window, cfg.se_bottleneck) for b in cfg.blocks
        )
        self.mfa = ConvBN(c * len(cfg.blocks), cfg.mfa_channels)
        self.att_hidden = nn.Conv1d(cfg.mfa_channels, cfg.attention_hidden, 1)
        self.att_out = nn.Conv1d(cfg.attention_hidden, cfg.mfa_channels, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.context_frames = cfg.context_frames
        self.frame_dim = cfg.frame_dim
        assert self.context_frames == self.front.context + sum(b.context for b in self.blocks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.front(self.input_norm(features.transpose(1, 2)))
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        # MFA: concatenate every block's output, each cropped to the deepest block's length
        remaining = [sum(b.context for b in self.blocks[i + 1 :]) for i in range(len(self.blocks))]
        cat = torch.cat([_crop(o, *_split_context(r)) for o, r in zip(outs, remaining, strict=True)], dim=1)
        h = self.dropout(self.mfa(cat))
        logits = self.att_out(torch.tanh(self.att_hidden(h)))
        return torch.cat([h, logits], dim=1).transpose(1, 2)


class AcousticPool(nn.Module):
    """Masked attentive statistics pooling -> BN -> linear -> L2 norm.

    ``forward(frames [B, T, 2C], mask [B, T]) -> embedding [B, D]``; ``mask`` is 1 on valid frames.
    """

    def __init__(self, frame_dim: int, channels: int, embedding_dim: int) -> None:
        super().__init__()
        assert frame_dim == 2 * channels
        self.channels = channels
        self.bn = nn.BatchNorm1d(2 * channels)
        self.proj = nn.Linear(2 * channels, embedding_dim)

    def stats(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.channels
        h, logits = frames[..., :c], frames[..., c:]
        m = mask.to(frames.dtype).unsqueeze(-1)
        w = torch.softmax(logits + (1.0 - m) * MASK_NEG, dim=1) * m
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-6)
        mean = (w * h).sum(dim=1)
        var = (w * h * h).sum(dim=1) - mean * mean
        std = torch.sqrt(var.clamp_min(1e-5))
        return torch.cat([mean, std], dim=-1)

    def unnormalized(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(self.bn(self.stats(frames, mask)))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalized(frames, mask), dim=-1)

"""The trainable openkws model: acoustic encoder (frames + pool), text encoder, phoneme cross-attention.

Only ``frames``, ``pool`` and ``text`` are exported; ``frame_proj`` and ``cross`` serve the
phoneme-level training branch (ADML) and are dropped at export.

Example:
    >>> import torch
    >>> from openkws.training.config import load_config
    >>> cfg = load_config("smoke.yaml").model
    >>> model = build_model(cfg).eval()
    >>> feats = torch.randn(3, model.windows[0], model.feature_dim)
    >>> out = model.encode_audio(feats, torch.tensor([model.windows[0]] * 3))
    >>> tuple(out.embedding.shape) == (3, cfg.embedding_dim)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from openkws.text import load_inventory
from openkws.training.config import ModelConfig
from openkws.training.nets.cross_attention import PhonemeCrossAttention
from openkws.training.nets.ecapa import AcousticFrames, AcousticPool
from openkws.training.nets.frontend import feature_geometry
from openkws.training.nets.text_encoder import TextEncoder, length_mask
from openkws.training.nets.windows import default_stride, default_windows


@dataclass
class AudioOutput:
    embedding: torch.Tensor  # [B, D] L2-normalised
    frames: torch.Tensor  # [B, T', 2C]
    frame_mask: torch.Tensor  # [B, T'] float

    def take(self, n: int) -> AudioOutput:
        """The first ``n`` windows (keyword windows encoded together with background windows)."""
        return AudioOutput(self.embedding[:n], self.frames[:n], self.frame_mask[:n])


class KWSModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_hop, self.feature_receptive, self.feature_dim = feature_geometry(cfg.frontend)
        self.frames = AcousticFrames(self.feature_dim, cfg.acoustic)
        self.pool = AcousticPool(cfg.acoustic.frame_dim, cfg.acoustic.mfa_channels, cfg.embedding_dim)
        self.text = TextEncoder(vocab_size, cfg.text, cfg.embedding_dim)
        self.frame_proj = nn.Linear(cfg.acoustic.mfa_channels, cfg.embedding_dim)
        self.cross = PhonemeCrossAttention(cfg.embedding_dim, cfg.attention_heads)
        self.context_frames = cfg.acoustic.context_frames
        self.windows = tuple(cfg.windows_frames or default_windows(cfg.frontend))
        self.window_stride = cfg.window_stride_frames or default_stride(cfg.frontend)
        if min(self.windows) <= self.context_frames:
            raise ValueError(
                f"window {min(self.windows)} frames is not longer than the acoustic context {self.context_frames}"
            )

    def encode_audio(self, features: torch.Tensor, lengths: torch.Tensor) -> AudioOutput:
        """features [B, T, F] (zero-padded), lengths [B] valid feature frames."""
        frames = self.frames(features)
        mask = length_mask((lengths - self.context_frames).clamp_min(1), frames.shape[1])
        return AudioOutput(self.pool(frames, mask), frames, mask)

    def encode_text(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (proxy [B, D] normalised, phoneme-level [B, L, D])."""
        phn = self.text.phonemes(ids, lengths)
        proxy = nn.functional.normalize(self.text.pool(phn, lengths), dim=-1)
        return proxy, phn

    def align(
        self, phn: torch.Tensor, text_lengths: torch.Tensor, audio: AudioOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention: audio frames aligned to each phoneme, [B, L, D], and affinity [B, L, T']."""
        values = audio.frames[..., : self.cfg.acoustic.mfa_channels]
        keys = self.frame_proj(values)
        return self.cross(phn, keys, length_mask(text_lengths, phn.shape[1]), audio.frame_mask)

    def exported_parameters(self) -> int:
        return sum(p.numel() for m in (self.frames, self.pool, self.text) for p in m.parameters())


def build_model(cfg: ModelConfig) -> KWSModel:
    return KWSModel(cfg, load_inventory().size)

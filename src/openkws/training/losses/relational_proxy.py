"""Relational Proxy Loss (RPL): Jung et al., "Relational Proxy Loss for Audio-Text based Keyword
Spotting", Interspeech 2024 (seed 000). Relations follow relational knowledge distillation
(Park et al., CVPR 2019)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from openkws.training.losses.base import MetricLoss, check_embeddings, check_labels, l2_normalize

Variant = Literal["distance", "angle", "prototype"]

SQ_DIST_EPS = 1e-6  # squared distances below this (float32 noise between equal unit vectors) count as 0
MEAN_EPS = 1e-12


def _distances(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distances ``[N, M]`` with a zero gradient (not NaN) at coincident points."""
    sq = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.transpose(0, 1)).clamp(min=0)
    return torch.where(sq > SQ_DIST_EPS, sq.clamp(min=SQ_DIST_EPS).sqrt(), torch.zeros_like(sq))


def _angles(x: Tensor) -> Tensor:
    """``A[j, i, k] = <e_ij, e_kj>`` with ``e_ij = (x_i - x_j) / ||x_i - x_j||``: ``[B, D] -> [B, B, B]``.

    Computed from the Gram matrix ``G = x x^T``: ``<x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj``,
    so the cost is ``O(B^2 D + B^3)`` rather than the ``O(B^3 D)`` of forming every ``e_ij``.
    Coincident points get a clamped norm (a finite, near-zero angle) instead of NaN.
    """
    g = x @ x.transpose(0, 1)
    diag = g.diagonal()
    norms = (diag[:, None] + diag[None, :] - 2.0 * g).clamp(min=SQ_DIST_EPS).sqrt()  # [j, i]
    num = g[None, :, :] - g[:, :, None] - g[:, None, :] + diag[:, None, None]
    return num / (norms[:, :, None] * norms[:, None, :])


class RelationalProxyLoss(MetricLoss):
    r"""RPL: match the *structure* of the audio embeddings to that of their text embeddings (Huber).

    Signature: ``forward(audio_emb [B, D], text_emb [B, D], labels [B]) -> scalar``, where
    ``text_emb[i]`` is the text embedding (proxy) paired with clip ``i`` (so clips of one class share
    it). Both are L2-normalised here. RPL is used *alongside* a point-to-point loss (e.g. AdaMS).

    Variants, each ``mean Huber_delta(psi(audio) - psi(text))`` over its relations:

    - ``"distance"``: ``psi_D(x_i, x_j) = ||x_i - x_j|| / mu`` for ordered pairs ``i != j``; ``mu`` is
      the mean of those distances in the same modality.
    - ``"angle"``: ``psi_A(x_i, x_j, x_k) = <e_ij, e_kj>``, ``e_ij = (x_i - x_j)/||x_i - x_j||``, over
      triplets with ``i, j, k`` distinct **and** ``c_i != c_j``, ``c_k != c_j``: when two clips share a
      class their text embeddings coincide and the text angle is undefined, so those triplets are left
      out (labels are used for that). Cost is ``O(B^3)`` time and memory (several ``[B, B, B]``
      float tensors: a few MB at ``B = 128``, about 3 GB at ``B = 500``).
    - ``"prototype"`` (RPL-P): ``psi_P(x_i)_k = ||x_i - c_k|| / mu`` for the ``K`` classes in the batch,
      with ``c_k`` the centroid (mean) of class ``k`` *in the same modality* (for text it is the proxy
      itself) and ``mu`` the mean of that ``[B, K]`` matrix.

    Interpretation (the RPL paper is only available as a summary, seed 000): the ``mu`` normalisation
    of the prototype variant mirrors ``psi_D``; gradients flow into both modalities (both encoders
    are trained) unless ``detach_text=True`` (the text structure is then a fixed teacher, as in RKD).

    Degenerate batch: fewer than two classes (the text structure is a single point), or for
    ``"angle"`` no valid triplet; counted, logged, graph-connected zero.

    Example:
        >>> import torch
        >>> text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> rpl = RelationalProxyLoss("distance")
        >>> rpl(text.clone(), text, torch.tensor([0, 0, 1])).item()  # same structure: zero loss
        0.0
    """

    def __init__(self, variant: Variant = "distance", delta: float = 1.0, detach_text: bool = False) -> None:
        super().__init__()
        if variant not in ("distance", "angle", "prototype"):
            raise ValueError(f"variant must be 'distance', 'angle' or 'prototype', got {variant!r}")
        if delta <= 0:
            raise ValueError(f"Huber delta must be positive, got {delta}")
        self.variant: Variant = variant
        self.delta = float(delta)
        self.detach_text = detach_text

    def extra_repr(self) -> str:
        return f"variant={self.variant}, delta={self.delta}, detach_text={self.detach_text}"

    def forward(self, audio_emb: Tensor, text_emb: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], text_emb [B, D], labels [B] -> scalar`` (see the class docstring)."""
        check_embeddings(audio_emb, "audio_emb")
        check_embeddings(text_emb, "text_emb", dim=audio_emb.shape[1])
        if text_emb.shape[0] != audio_emb.shape[0]:
            raise ValueError(
                f"text_emb must hold one row per clip ({audio_emb.shape[0]}), got {tuple(text_emb.shape)}"
            )
        check_labels(labels, audio_emb.shape[0])
        labels = labels.long()
        classes, inverse = torch.unique(labels, return_inverse=True)
        if classes.numel() < 2:
            return self._degenerate(
                "one class in the batch: the text structure is a single point", audio_emb, text_emb
            )
        a = l2_normalize(audio_emb)
        t = l2_normalize(text_emb.detach() if self.detach_text else text_emb)
        if self.variant == "distance":
            off_diag = ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
            psi_a, psi_t = (
                self._normalised(_distances(a, a)[off_diag]),
                self._normalised(_distances(t, t)[off_diag]),
            )
        elif self.variant == "prototype":
            psi_a = self._normalised(_distances(a, self._centroids(a, inverse, classes.numel())))
            psi_t = self._normalised(_distances(t, self._centroids(t, inverse, classes.numel())))
        else:
            other_class = labels[:, None] != labels[None, :]  # [j, i]: c_i != c_j (so i != j)
            eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
            valid = other_class[:, :, None] & other_class[:, None, :] & ~eye[None, :, :]  # [j, i, k]
            count = int(valid.sum())
            if count == 0:
                return self._degenerate("no triplet with c_i != c_j and c_k != c_j", audio_emb, text_emb)
            # a dense mask instead of boolean indexing: indexing B^3 elements dominated the run time
            huber = F.huber_loss(_angles(a), _angles(t), reduction="none", delta=self.delta)
            return (huber * valid).sum() / count
        return F.huber_loss(psi_a, psi_t, delta=self.delta)

    @staticmethod
    def _normalised(dist: Tensor) -> Tensor:
        return dist / dist.mean().clamp(min=MEAN_EPS)

    @staticmethod
    def _centroids(x: Tensor, inverse: Tensor, k: int) -> Tensor:
        sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, inverse, x)
        counts = torch.bincount(inverse, minlength=k).to(x.dtype)
        return sums / counts[:, None]

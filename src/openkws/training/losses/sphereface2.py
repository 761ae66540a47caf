"""SphereFace2 keyword classification on the acoustic branch (Wen et al., "SphereFace2: Binary
Classification is All You Need for Deep Face Recognition", ICLR 2022; used by ADML, seed 001)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openkws.training.losses.base import MetricLoss, check_embeddings, check_labels, cosine_matrix


def _similarity_adjustment(cos: Tensor | float, t: float | None) -> Tensor | float:
    """``g(z) = 2 ((z + 1) / 2)^t - 1`` (identity when ``t`` is None)."""
    if t is None:
        return cos
    return 2.0 * ((cos + 1.0) / 2.0) ** t - 1.0


def initial_bias(num_classes: int, r: float, m: float, lam: float, t: float | None) -> float:
    """Bias that minimises the loss when every cosine is 0 (random weights in high dimension).

    Setting ``dL/db = 0`` at ``cos = 0`` gives ``z * sigmoid(-(a_y + b)) = sigmoid(a_n + b)`` with
    ``a_y = r (g(0) - m)``, ``a_n = r (g(0) + m)``, ``z = lam / ((1 - lam)(C - 1))``; its root is
    ``b = log(2z) - a_n - log(1 - z + sqrt((1 - z)^2 + 4 z exp(a_y - a_n)))``.

    Example:
        >>> round(initial_bias(2, r=1.0, m=0.0, lam=0.5, t=None), 6)  # symmetric case: b = 0
        0.0
    """
    g0 = float(_similarity_adjustment(0.0, t))
    a_y, a_n = r * (g0 - m), r * (g0 + m)
    z = lam / ((1.0 - lam) * (num_classes - 1))
    root = math.sqrt((1.0 - z) ** 2 + 4.0 * z * math.exp(a_y - a_n))
    return math.log(2.0 * z) - a_n - math.log(1.0 - z + root)


class SphereFace2Loss(MetricLoss):
    r"""SphereFace2: one binary classifier per class with an additive angular margin (SphereFace2-C).

    Signature: ``forward(audio_emb [B, D], labels [B] in [0, num_classes)) -> scalar``. The class
    weights ``weight [num_classes, D]`` and the bias ``bias []`` are ``nn.Parameter`` s of this module
    (give them to the optimizer); weights and embeddings are L2-normalised in the forward.

    Formula (METHOD digest; Wen et al. 2022, Eq. 5 with similarity adjustment), averaged over the
    batch::

        L_i = lam/r * log(1 + exp(-(r (g(cos th_{y_i}) - m) + b)))
            + (1 - lam)/r * sum_{j != y_i} log(1 + exp(r (g(cos th_j) + m) + b))

    with ``g(z) = 2((z + 1)/2)^t - 1`` (``t=None`` disables it, ``g(z) = z``). Defaults ``r=32``,
    ``m=0.2``, ``lam=0.7``, ``t=3`` are the values used for speaker verification with SphereFace2
    (ADML does not list its own). The bias starts at :func:`initial_bias`.

    Degenerate input: none beyond an empty batch (``ValueError``); one class in a batch is still a
    valid set of binary problems against the other ``num_classes - 1`` classifiers.

    Example:
        >>> import torch
        >>> sf2 = SphereFace2Loss(dim=4, num_classes=10)
        >>> loss = sf2(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 5]))
        >>> loss.backward()
        >>> sf2.weight.grad.shape, sf2.bias.grad.shape
        (torch.Size([10, 4]), torch.Size([]))
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        r: float = 32.0,
        m: float = 0.2,
        lam: float = 0.7,
        t: float | None = 3.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SphereFace2 needs num_classes >= 2, got {num_classes}")
        if dim < 1 or r <= 0 or not 0.0 < lam < 1.0:
            raise ValueError(f"need dim >= 1, r > 0 and 0 < lam < 1; got dim={dim}, r={r}, lam={lam}")
        self.dim, self.num_classes = dim, num_classes
        self.r, self.m, self.lam, self.t = float(r), float(m), float(lam), t
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_normal_(self.weight)
        self.bias = nn.Parameter(torch.tensor(initial_bias(num_classes, self.r, self.m, self.lam, t)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_classes={self.num_classes}, r={self.r}, m={self.m}, lam={self.lam}, t={self.t}"

    def forward(self, audio_emb: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], labels [B] -> scalar`` (see the class docstring)."""
        check_embeddings(audio_emb, "audio_emb", dim=self.dim)
        check_labels(labels, audio_emb.shape[0], self.num_classes)
        g = _similarity_adjustment(cosine_matrix(audio_emb, self.weight), self.t)
        target = F.one_hot(labels.long(), self.num_classes).bool()
        pos = self.lam / self.r * F.softplus(-(self.r * (g - self.m) + self.bias))
        neg = (1.0 - self.lam) / self.r * F.softplus(self.r * (g + self.m) + self.bias)
        return torch.where(target, pos, neg).sum(dim=1).mean()

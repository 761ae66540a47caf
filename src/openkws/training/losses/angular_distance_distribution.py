"""Angular Distance Distribution (ADD) loss (Almudévar et al., seed 004, Eq. 1-5)."""

from __future__ import annotations

import torch
from torch import Tensor

from openkws.training.losses.base import MetricLoss, check_embeddings, check_labels, cosine_matrix

VAR_EPS = 1e-12  # inside the sqrt of sigma: keeps d sigma / d x finite when all distances are equal


def _mean_std(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and Bessel-corrected standard deviation (seed 004, Eq. 3-4) of a 1-D tensor (len >= 2)."""
    mu = values.mean()
    var = ((values - mu) ** 2).sum() / (values.numel() - 1)
    return mu, torch.sqrt(var + VAR_EPS)


class AngularDistanceDistributionLoss(MetricLoss):
    r"""ADD: first and second moments of the angular distances within and across classes.

    Signature: ``forward(emb [B, D], labels [B]) -> scalar``. Embeddings are L2-normalised here. The
    paper adds it to a classification loss (``L = L_CE + L_ADD``, Eq. 6); here that is SphereFace2 or
    a proxy loss, combined by the trainer.

    Formula (seed 004), with ``d_c(x, y) = 1 - x.y``::

        D_p = { d_c(z_i, z_j)^2      : y_i = y_j, i != j }      (Eq. 1)
        D_n = { (1 - d_c(z_i, z_j))^2 : y_i != y_j }           (Eq. 2)
        L_ADD = l1 mu_p + l2 sigma_p + l3 mu_n + l4 sigma_n     (Eq. 5)

    ``mu`` is the mean and ``sigma`` the standard deviation with Bessel's correction
    (``/(|D| - 1)``, Eq. 4). The pairs are **ordered** ``(i, j)``, ``i != j`` (a masked ``B x B``
    matrix, as in the authors' code), so each unordered pair appears twice: ``mu`` is unaffected,
    ``sigma`` uses ``2n - 1`` instead of ``n - 1``. ``sigma`` is ``sqrt(var + 1e-12)`` so its gradient
    stays finite when all distances are equal. All four weights default to 1 (the paper's best).

    Degenerate batch: ``D_p`` empty (no two clips share a class) or ``D_n`` empty (one class);
    counted, logged, graph-connected zero.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> loss = AngularDistanceDistributionLoss()(emb, torch.tensor([0, 0, 1, 1]))
        >>> round(loss.item(), 5)  # classes collapsed and orthogonal: every term is (almost) 0
        0.0
    """

    def __init__(self, l1: float = 1.0, l2: float = 1.0, l3: float = 1.0, l4: float = 1.0) -> None:
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = float(l1), float(l2), float(l3), float(l4)

    def extra_repr(self) -> str:
        return f"l1={self.l1}, l2={self.l2}, l3={self.l3}, l4={self.l4}"

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        """``emb [B, D], labels [B] -> scalar`` (see the class docstring)."""
        check_embeddings(emb, "emb")
        check_labels(labels, emb.shape[0])
        labels = labels.long()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        pos_mask, neg_mask = same & ~eye, ~same
        if not pos_mask.any():
            return self._degenerate("no two clips share a class: D_p is empty", emb)
        if not neg_mask.any():
            return self._degenerate("one class in the batch: D_n is empty", emb)
        cos = cosine_matrix(emb, emb)
        d_c = 1.0 - cos
        mu_p, sigma_p = _mean_std(d_c[pos_mask] ** 2)
        mu_n, sigma_n = _mean_std((1.0 - d_c[neg_mask]) ** 2)
        return self.l1 * mu_p + self.l2 * sigma_p + self.l3 * mu_n + self.l4 * sigma_n

"""Proxy-MS: Multi-Similarity (Wang et al., 2019) in the proxy framework of seed 002 (Table 1: ELSE/ELSE)."""

from __future__ import annotations

from typing import ClassVar

from openkws.training.losses.proxy_pair import Reduction, SimilarityType, SymmetricProxyLoss


class ProxyMSLoss(SymmetricProxyLoss):
    r"""Proxy-MS: Extended-LogSumExp for both terms (seed 002, Eq. 7 with proxy similarities).

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.

    Formula, with ``S`` of type P/N (default) or A (``similarity="a"``)::

        L = sum_i [ 1/alpha log(1 + sum_{j in P_i} exp(alpha (lambda - S_ij)))
                  + 1/beta  log(1 + sum_{k in N_i} exp(beta (S_ik - lambda))) ]

    Anchors are summed (Eq. 7). Defaults ``alpha=2, beta=50, lambda=0.5`` (Sec. 4.2). With
    ``similarity="a"`` and one proxy per class this is the Proxy-Anchor loss (Kim et al., 2020) up to
    the sum over duplicated anchors.

    Degenerate batch: one class (no negatives); counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> loss = ProxyMSLoss()(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> expected = 2 * (0.5 * math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-25.0)) / 50)
        >>> abs(loss.item() - expected) < 1e-6
        True
    """

    pos_fn: ClassVar[str] = "else"
    neg_fn: ClassVar[str] = "else"

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        margin: float = 0.5,
        similarity: SimilarityType = "pn",
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, margin=margin, similarity=similarity, reduction=reduction)

"""Proxy-BD: Binomial Deviance (Yi et al., 2014) in the proxy framework of seed 002 (Table 1: MSP/MSP)."""

from __future__ import annotations

from typing import ClassVar

from openkws.training.losses.proxy_pair import Reduction, SimilarityType, SymmetricProxyLoss


class ProxyBDLoss(SymmetricProxyLoss):
    r"""Proxy-BD: Mean-SoftPlus for both terms (seed 002, Eq. 4 with proxy similarities).

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.

    Formula, with ``S`` of type P/N (default) or A (``similarity="a"``)::

        L = sum_i [ 1/|P_i| sum_{j in P_i} log(1 + exp(alpha (lambda - S_ij)))
                  + 1/|N_i| sum_{k in N_i} log(1 + exp(beta (S_ik - lambda))) ]

    Anchors are summed (Eq. 4). Defaults ``alpha=2, beta=50, lambda=0.5`` (Sec. 4.2).

    In the multi-view batch the two types give the *same* value whenever every anchor has the same
    number of negatives (a K x M batch): each (clip, other-class proxy) pair is then weighted
    ``1/|N|`` either way, and the positive means coincide too. They differ on unbalanced batches.

    Degenerate batch: one class (no negatives); counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> loss = ProxyBDLoss()(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> expected = 2 * (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-25.0)))
        >>> abs(loss.item() - expected) < 1e-6
        True
    """

    pos_fn: ClassVar[str] = "msp"
    neg_fn: ClassVar[str] = "msp"

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        margin: float = 0.5,
        similarity: SimilarityType = "pn",
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, margin=margin, similarity=similarity, reduction=reduction)

"""Proxy-NCA (Movshovitz-Attias et al., 2017) in the proxy framework of seed 002 (Table 1: LSE)."""

from __future__ import annotations

from typing import ClassVar

from openkws.training.losses.proxy_pair import Reduction, SimilarityType, SymmetricProxyLoss


class ProxyNCALoss(SymmetricProxyLoss):
    r"""Proxy-NCA: plain log-sum-exp for both terms, no margin.

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.

    Formula, with ``S`` of type P/N (default) or A (``similarity="a"``), ``s`` the softmax scale::

        L = sum_i [ log sum_{j in P_i} exp(-s * S_ij) + log sum_{k in N_i} exp(s * S_ik) ]

    With one positive this is ``-s*S_ip + log sum_k exp(s*S_ik)``, i.e. ``-log(e^{s S_ip} / sum_k e^{s S_ik})``,
    the original Proxy-NCA. In the multi-view batch (see :class:`~openkws.training.losses.proxy_pair.ProxyPairLoss`)
    the type-P/N positive set holds ``n_c`` copies of the anchor's own proxy, which adds the constant
    ``log n_c`` (no gradient). Anchors are summed (seed 002, Eq. 10). The default ``s = 1`` is the
    original's; the paper's AsyP scales do not apply to LSE (it has no margin, Sec. 4.5).

    Degenerate batch: one class (no negatives); counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> loss = ProxyNCALoss()(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> abs(loss.item() - 2 * (-1.0 + 0.0)) < 1e-6  # each anchor: -cos(a, own) + log e^{cos(a, other)}
        True
    """

    pos_fn: ClassVar[str] = "lse"
    neg_fn: ClassVar[str] = "lse"

    def __init__(
        self, scale: float = 1.0, similarity: SimilarityType = "pn", reduction: Reduction = "sum"
    ) -> None:
        super().__init__(alpha=scale, beta=scale, margin=0.0, similarity=similarity, reduction=reduction)

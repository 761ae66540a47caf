"""Asymmetric-Proxy loss (AsyP): Jung & Kim, "Asymmetric Proxy Loss for Multi-View Acoustic Word
Embeddings" (seed 002), Eq. 11."""

from __future__ import annotations

from typing import ClassVar

from openkws.training.losses.proxy_pair import ProxyPairLoss, Reduction, SimilarityType


class AsymmetricProxyLoss(ProxyPairLoss):
    r"""AsyP: ELSE over type-A similarities for positives, MSP over type-P/N similarities for negatives.

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``;
    ``proxies[c]`` is the text embedding (AGWE) of class ``c``. Inputs are L2-normalised here.

    Formula (seed 002, Eq. 11), over the multi-view batch where clip ``i`` carries the proxy of its
    class, ``t_i = proxies[labels[i]]``::

        L = sum_{i=1}^{N} [ 1/alpha * log(1 + sum_{j in P_i} exp(alpha * (lambda - S^A_ij)))
                            + 1/|N_i| * sum_{k in N_i} log(1 + exp(beta * (S^{P/N}_ik - lambda))) ]

    with ``S^A_ij = cos(t_i, a_j)`` (the proxy is the anchor, its positives are the clips of its class),
    ``S^{P/N}_ik = cos(a_i, t_k)`` (the clip is the anchor, the proxies of other classes' clips are its
    negatives), ``P_i = {j : c_j = c_i}`` (``i`` included), ``N_i = {k : c_k != c_i}``.
    Defaults are the paper's: ``alpha=2, beta=50, lambda=0.5``.

    Normalisation: a plain **sum over the N anchors** (no ``1/N``), as in Eq. 11; a proxy whose class
    has ``n_c`` clips in the batch is an anchor ``n_c`` times. MSP averages over ``N_i``; ELSE is scaled
    by ``1/alpha``. ``reduction="mean"`` divides by ``N`` instead (not in the paper).

    Degenerate batch (one class, so no negatives): counted in ``degenerate_batches``, logged, and a
    graph-connected zero is returned. An empty batch raises ``ValueError``.

    Example:
        >>> import math, torch
        >>> loss_fn = AsymmetricProxyLoss()
        >>> audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> loss = loss_fn(audio, proxies, torch.tensor([0, 1]))
        >>> # per anchor: 1/2*log(1 + e^{2(0.5-1)}) + log(1 + e^{50(0-0.5)}); two anchors
        >>> expected = 2 * (0.5 * math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-25.0)))
        >>> abs(loss.item() - expected) < 1e-6
        True
    """

    pos_fn: ClassVar[str] = "else"
    neg_fn: ClassVar[str] = "msp"
    pos_similarity: SimilarityType = "a"
    neg_similarity: SimilarityType = "pn"

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, margin: float = 0.5, reduction: Reduction = "sum"
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, margin=margin, reduction=reduction)

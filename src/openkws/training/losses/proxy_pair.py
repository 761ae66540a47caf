"""The generalised proxy-based loss of the Asymmetric-Proxy paper (seed 002, Eq. 10).

AsyP, Proxy-NCA, Proxy-BD, Proxy-MS and AdaMS are this one class with different hooks:
the positive/negative pair functions (:data:`~openkws.training.losses.base.PAIR_FUNCTIONS`), the type of
similarity each term uses, and (for AdaMS) where the scales and the margin come from.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor

from openkws.training.losses.base import PAIR_FUNCTIONS, MetricLoss, check_proxy_inputs, cosine_matrix

SimilarityType = Literal["pn", "a"]
Reduction = Literal["sum", "mean"]


class ProxyPairLoss(MetricLoss):
    r"""``L = sum_i F_P(S^P, P_i) + F_N(S^N, N_i)`` over the multi-view batch (seed 002, Eq. 10).

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.
    ``proxies[c]`` is the text embedding (AGWE) of class ``c``; both inputs are L2-normalised here.

    The batch is the paper's multi-view batch ``{(x_i, t_i, c_i)}_{i=1..N}``: clip ``i`` carries the
    proxy of its own class, ``t_i = proxies[labels[i]]``. So both similarity matrices are ``N x N``
    (Eq. 9):

    - type P/N: ``S^{P/N}_ij = cos(a_i, t_j)`` (the clip is the anchor);
    - type A: ``S^A_ij = cos(t_i, a_j)`` (the proxy is the anchor), the transpose of P/N.

    ``P_i = {j : c_j = c_i}`` (including ``i`` itself: in the multi-view setting ``S_ii`` is the
    clip-to-own-proxy pair) and ``N_i = {j : c_j != c_i}``. A proxy whose class has ``n_c`` clips in the
    batch therefore appears ``n_c`` times, exactly as in the paper; proxies of classes with no clip in
    the batch take no part.

    Normalisation (read off Eq. 4, 7, 10, 11): the anchors are **summed**, ``sum_{i=1}^{N}``, with no
    ``1/N``; inside an anchor MSP averages over its set (``1/|P_i|``, ``1/|N_i|``) and ELSE carries
    ``1/alpha`` or ``1/beta``. ``reduction="mean"`` divides the sum by ``N`` (not in the paper; handy
    when combining with mean-reduced losses).

    Hooks for subclasses: ``pos_fn``/``neg_fn`` (names in ``PAIR_FUNCTIONS``), ``pos_similarity``/
    ``neg_similarity`` (``"pn"`` or ``"a"``) and :meth:`scales_and_margin`.

    Degenerate batch: one class only (no anchor has a negative). Anchors without negatives in an
    otherwise valid batch contribute no negative term.
    """

    pos_fn: ClassVar[str] = "else"
    neg_fn: ClassVar[str] = "msp"
    pos_similarity: SimilarityType = "a"
    neg_similarity: SimilarityType = "pn"

    def __init__(self, alpha: float, beta: float, margin: float, reduction: Reduction = "sum") -> None:
        super().__init__()
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"scales must be positive, got alpha={alpha}, beta={beta}")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' (paper) or 'mean', got {reduction!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.margin = float(margin)
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"F_P={self.pos_fn}({self.pos_similarity}), F_N={self.neg_fn}({self.neg_similarity}), "
            f"alpha={self.alpha}, beta={self.beta}, margin={self.margin}, reduction={self.reduction}"
        )

    def scales_and_margin(
        self, labels: Tensor, class_ids: Tensor | None
    ) -> tuple[float | Tensor, float | Tensor, float | Tensor]:
        """Hook: ``(alpha, beta, lambda)`` as floats, or as ``[N, 1]`` tensors (one per anchor)."""
        return self.alpha, self.beta, self.margin

    def forward(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], proxies [C, D], labels [B] -> scalar`` (see the class docstring)."""
        return self._loss(audio_emb, proxies, labels, None)

    def _loss(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor, class_ids: Tensor | None) -> Tensor:
        check_proxy_inputs(audio_emb, proxies, labels)
        labels = labels.long()
        same = labels[:, None] == labels[None, :]
        if same.all():
            return self._degenerate("one class in the batch: no negatives", audio_emb, proxies)
        s_pn = cosine_matrix(audio_emb, proxies[labels])  # S^{P/N}_ij = cos(a_i, t_j)
        similarity = {"pn": s_pn, "a": s_pn.transpose(0, 1)}  # S^A_ij = cos(t_i, a_j)
        alpha, beta, lam = self.scales_and_margin(labels, class_ids)
        pos = PAIR_FUNCTIONS[self.pos_fn](lam - similarity[self.pos_similarity], same, alpha)
        neg = PAIR_FUNCTIONS[self.neg_fn](similarity[self.neg_similarity] - lam, ~same, beta)
        total = (pos + neg).sum()
        return total / labels.shape[0] if self.reduction == "mean" else total


class SymmetricProxyLoss(ProxyPairLoss):
    """A proxy loss with the same pair function and similarity type for both terms (Table 1 baselines).

    ``similarity="pn"`` (proxies as positives/negatives) or ``"a"`` (proxies as anchors).
    """

    def __init__(
        self,
        alpha: float,
        beta: float,
        margin: float,
        similarity: SimilarityType = "pn",
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, margin=margin, reduction=reduction)
        if similarity not in ("pn", "a"):
            raise ValueError(f"similarity must be 'pn' or 'a', got {similarity!r}")
        self.pos_similarity = similarity
        self.neg_similarity = similarity


__all__ = ["ProxyPairLoss", "SymmetricProxyLoss", "SimilarityType", "Reduction"]

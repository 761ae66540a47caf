"""Triplet and multi-view triplet baselines (seed 002, Sec. 4.4 and Table 1; He et al., ICLR 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from openkws.training.losses.base import MetricLoss, check_proxy_inputs, cosine_matrix

Mining = Literal["all", "hardest"]


def _hinge_over_triplets(
    sim: Tensor, pos_mask: Tensor, neg_mask: Tensor, margin: float, mining: Mining
) -> tuple[Tensor, int]:
    """Hinge ``max(0, margin + sim[a, n] - sim[a, p])`` over triplets of anchors (rows) of ``sim [N, M]``.

    ``pos_mask``/``neg_mask [N, M]`` mark each anchor's positives/negatives. ``mining="all"``
    averages over every valid ``(a, p, n)``; ``"hardest"`` keeps, per anchor, the least similar
    positive and the most similar negative, then averages over anchors. Returns ``(loss, #triplets)``.
    """
    valid_anchor = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not valid_anchor.any():
        return sim.sum() * 0.0, 0
    if mining == "hardest":
        hardest_pos = sim.masked_fill(~pos_mask, float("inf")).min(dim=1).values
        hardest_neg = sim.masked_fill(~neg_mask, float("-inf")).max(dim=1).values
        hinge = (margin + hardest_neg - hardest_pos)[valid_anchor].clamp(min=0)
        return hinge.mean(), int(valid_anchor.sum())
    # Gather each anchor's positives (few: M - 1 or M per class) so the tensor is [N, P_max, M], not [N, M, M].
    p_max = int(pos_mask.sum(dim=1).max())
    order = torch.sort(pos_mask.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :p_max]
    pos_sim, pos_valid = sim.gather(1, order), pos_mask.gather(1, order)
    hinge = (margin + sim[:, None, :] - pos_sim[:, :, None]).clamp(min=0)  # [anchor, positive, negative]
    mask = pos_valid[:, :, None] & neg_mask[:, None, :]
    count = int(mask.sum())
    return (hinge * mask).sum() / count, count


class TripletLoss(MetricLoss):
    r"""Single-view triplet loss on audio embeddings (the "Triplet" row of seed 002, Table 1).

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.
    ``proxies`` is accepted (and shape-checked) for the common proxy-family signature but **not used**:
    this is the single-view baseline.

    Formula, with cosine similarity of L2-normalised embeddings::

        L = mean_{(a, p, n)} max(0, m + cos(x_a, x_n) - cos(x_a, x_p)),
            c_p = c_a, p != a, c_n != c_a

    ``mining="hardest"`` uses per anchor the hardest positive and negative (batch-hard) and averages
    over anchors. ``margin`` defaults to 0.4 (a common choice for acoustic word embeddings; tune it).
    ``mining="all"`` builds a ``[B, P, B]`` tensor, ``P`` the largest number of positives per anchor.

    Degenerate batch: no anchor has both a positive (another clip of its class) and a negative;
    counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> ang = torch.tensor([0.0, 0.5, 2.0])
        >>> audio = torch.stack([ang.cos(), ang.sin()], dim=1)
        >>> loss = TripletLoss(margin=0.4)(audio, torch.eye(2), torch.tensor([0, 0, 1]))
        >>> # anchors 0 and 1 each have one triplet: max(0, 0.4 + cos(2.0 - a) - cos(0.5))
        >>> e = (max(0, 0.4 + math.cos(2.0) - math.cos(0.5)) + max(0, 0.4 + math.cos(1.5) - math.cos(0.5))) / 2
        >>> abs(loss.item() - e) < 1e-6
        True
    """

    def __init__(self, margin: float = 0.4, mining: Mining = "all") -> None:
        super().__init__()
        if mining not in ("all", "hardest"):
            raise ValueError(f"mining must be 'all' or 'hardest', got {mining!r}")
        self.margin = float(margin)
        self.mining: Mining = mining

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining}"

    def forward(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], proxies [C, D] (unused), labels [B] -> scalar``."""
        check_proxy_inputs(audio_emb, proxies, labels)
        labels = labels.long()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        loss, count = _hinge_over_triplets(
            cosine_matrix(audio_emb, audio_emb), same & ~eye, ~same, self.margin, self.mining
        )
        if count == 0:
            return self._degenerate("no anchor has both a positive and a negative clip", audio_emb, proxies)
        return loss


class MultiViewTripletLoss(TripletLoss):
    r"""Multi-view triplet loss: audio anchors against text positives/negatives, and the reverse.

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.

    Over the multi-view batch ``t_i = proxies[labels[i]]`` and ``S_ij = cos(a_i, t_j)``
    (METHOD digest; "MV Triplet" of seed 002 Table 1, after He et al., 2017)::

        L = mean_{(i, k)} max(0, m + cos(a_i, t_k) - cos(a_i, t_i))                 audio anchor
          + mean_{(i, j, k)} max(0, m + cos(t_i, a_k) - cos(t_i, a_j))               text anchor

    with ``c_j = c_i`` and ``c_k != c_i``. Each half is averaged over its own valid triplets
    (``mining="hardest"``: per anchor the hardest positive and negative). Proxies of classes absent
    from the batch are not used, as in the rest of the proxy family.

    Degenerate batch: one class (no negatives); counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> loss = MultiViewTripletLoss(margin=0.4)(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> loss.item()  # every triplet satisfied by 1 > 0.4: both hinges are 0
        0.0
    """

    def forward(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], proxies [C, D], labels [B] -> scalar``."""
        check_proxy_inputs(audio_emb, proxies, labels)
        labels = labels.long()
        same = labels[:, None] == labels[None, :]
        if same.all():
            return self._degenerate("one class in the batch: no negatives", audio_emb, proxies)
        s = cosine_matrix(audio_emb, proxies[labels])  # S_ij = cos(a_i, t_j)
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        audio_anchor, _ = _hinge_over_triplets(s, eye, ~same, self.margin, self.mining)
        text_anchor, _ = _hinge_over_triplets(s.transpose(0, 1), same, ~same, self.margin, self.mining)
        return audio_anchor + text_anchor

"""Angular prototypical loss (AP; Chung et al., 2020) and AP-FC, AP with fixed classes (Huh et al.,
"Metric Learning for Keyword Spotting", SLT 2021; seed 003)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openkws.training.losses.base import MetricLoss, check_proxy_inputs, cosine_matrix, l2_normalize

INIT_W = 10.0  # Chung et al.'s initial scale and offset
INIT_B = -5.0


class AngularPrototypicalLoss(MetricLoss):
    r"""AP: softmax cross-entropy over ``S = w cos(e, c_k) + b`` with in-batch class centroids.

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``.
    ``proxies`` is accepted (and shape-checked) for the proxy-family signature but **not used** by
    plain AP (a single-view baseline); :class:`AngularPrototypicalFCLoss` uses it.

    Every clip is a query; its class centroids are the means of the batch's clips of each class, its
    own class's centroid leaving the query out (seed 003: "``c_k`` is the mean of class ``k`` excluding
    the target utterance"; here every clip takes the query role in turn, as in GE2E). Over the ``K``
    classes present::

        S_ik = w cos(e_i, c_k) + b,      L = mean_i -log softmax_k(S_i)[y_i]

    ``w`` (kept ``> 0`` by clamping at 1e-6) and ``b`` are ``nn.Parameter`` s, initialised to 10 and
    -5. Note: ``b`` adds the same constant to every logit, so it cancels in the softmax and its
    gradient is exactly zero; it is kept only to match the published formula.

    Degenerate batch: one class, or no class with two clips (no query has a centroid of its own);
    counted, logged, graph-connected zero. Queries whose class has a single clip are skipped.

    Example:
        >>> import math, torch
        >>> audio = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> loss = AngularPrototypicalLoss()(audio, torch.eye(2), torch.tensor([0, 0, 1, 1]))
        >>> abs(loss.item() - math.log(1 + math.exp(-10.0))) < 1e-6  # cos 1 vs 0, w = 10
        True
    """

    def __init__(self, init_w: float = INIT_W, init_b: float = INIT_B) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def class_logits(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | str:
        """Hook: cosines ``[Q, K]`` and targets ``[Q]`` for the queries, or the reason the batch is degenerate."""
        classes, inverse = torch.unique(labels, return_inverse=True)
        k = classes.numel()
        if k < 2:
            return "one class in the batch"
        e = l2_normalize(audio_emb)
        sums = torch.zeros(k, e.shape[1], dtype=e.dtype, device=e.device).index_add(0, inverse, e)
        counts = torch.bincount(inverse, minlength=k).to(e.dtype)
        query = counts[inverse] > 1
        if not query.any():
            return "no class has two clips: no leave-one-out centroid"
        cos = cosine_matrix(e, sums / counts[:, None])  # [B, K] against full centroids
        own = (sums[inverse] - e) / (counts[inverse] - 1).clamp(min=1)[:, None]
        own_cos = (l2_normalize(e) * l2_normalize(own)).sum(dim=1)
        cos = cos.scatter(1, inverse[:, None], own_cos[:, None])
        return cos[query], inverse[query]

    def forward(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
        """``audio_emb [B, D], proxies [C, D], labels [B] -> scalar`` (see the class docstring)."""
        check_proxy_inputs(audio_emb, proxies, labels)
        out = self.class_logits(audio_emb, proxies, labels.long())
        if isinstance(out, str):
            return self._degenerate(out, audio_emb, proxies)
        cos, target = out
        return F.cross_entropy(self.w.clamp(min=1e-6) * cos + self.b, target)


class AngularPrototypicalFCLoss(AngularPrototypicalLoss):
    r"""AP-FC: angular prototypical loss whose class centroids are the class weights (seed 003, Sec. 2.3).

    In the open-vocabulary setting the text proxies take the place of the learned per-class weights
    ``W_k``: ``S_ik = w cos(e_i, p_k) + b`` over **all** ``C`` proxies given, then softmax
    cross-entropy with target ``labels[i]``::

        L = mean_i -log( exp(S_{i, y_i}) / sum_{k=1}^{C} exp(S_ik) )

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C)) -> scalar``. Unlike
    the proxy-pair losses, proxies of classes without a clip in the batch still act as negatives
    (this is a classifier over the given classes). ``w``, ``b`` as in :class:`AngularPrototypicalLoss`
    (``b`` has zero gradient). Huh et al.'s non-target class does not exist in this setting.

    Degenerate batch: a single proxy (``C == 1``); counted, logged, graph-connected zero.

    Example:
        >>> import math, torch
        >>> loss = AngularPrototypicalFCLoss()(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> abs(loss.item() - math.log(1 + math.exp(-10.0))) < 1e-6
        True
    """

    def class_logits(self, audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | str:
        if proxies.shape[0] < 2:
            return "a single proxy: softmax over one class"
        return cosine_matrix(audio_emb, proxies), labels

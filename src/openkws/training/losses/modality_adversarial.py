"""Modality adversarial learning (MAL) of ADML (seed 001): a gradient reversal layer in front of a
2-layer modality classifier."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openkws.training.losses.base import MetricLoss, check_embeddings, l2_normalize


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-lambda``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambda_ * grad_output, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """Gradient reversal (Ganin & Lempitsky, 2015): ``y = x`` forward, ``dL/dx = -lambda * dL/dy`` backward.

    Example:
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> (grad_reverse(x, 0.5) * torch.tensor([3.0, 4.0])).sum().backward()
        >>> x.grad
        tensor([-1.5000, -2.0000])
    """
    y: Tensor = _GradReverse.apply(x, lambda_)  # torch types Function.apply as returning Any
    return y


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``lambda_`` may be changed between steps (a schedule).

    Example:
        >>> grl = GradientReversal(2.0)
        >>> x = torch.ones(3, requires_grad=True)
        >>> grl(x).sum().backward(); x.grad
        tensor([-2., -2., -2.])
    """

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambda_)


class ModalityAdversarialLoss(MetricLoss):
    r"""MAL: BCE of a modality classifier that sees the embeddings through a gradient reversal layer.

    Signature: ``forward(audio_emb [N, D], text_emb [M, D]) -> scalar``. Use one instance per level
    (utterance embeddings; phoneme-level aligned audio vs phoneme text embeddings). ADML weights it
    with ``lambda_adv = 0.1`` in the total loss (the trainer's job, not this module's).

    The classifier is ``Linear(D, hidden) -> ReLU -> Linear(hidden, 1)`` (2 FC layers, 256 hidden
    units in ADML); its logit predicts "audio" (target 1) versus "text" (target 0). Inputs are
    L2-normalised first (``normalize=True``), so the classifier judges the same directions the cosine
    scoring uses, not the norms. Loss, balanced over the two modalities so that chance is ``log 2``
    whatever ``N`` and ``M`` are::

        L = 1/2 * mean_i BCE(h(GRL(a_i)), 1) + 1/2 * mean_j BCE(h(GRL(t_j)), 0)

    One backward pass trains both players: the classifier parameters descend ``L``; through the GRL
    the encoders receive ``-grl_lambda * dL/d(emb)`` and so ascend it (seed 001, Sec. 3.3).

    ``last_accuracy`` is the balanced accuracy of the last forward (mean of the per-modality
    accuracies, chance 0.5); ADML expects it near chance, but not collapsing from the first step.

    Degenerate input: none beyond empties; an empty ``audio_emb`` or ``text_emb`` raises
    ``ValueError`` (a modality classifier needs both modalities).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> mal = ModalityAdversarialLoss(dim=8)
        >>> audio = torch.randn(4, 8, requires_grad=True)
        >>> loss = mal(audio, torch.randn(3, 8))
        >>> loss.backward()
        >>> 0.0 <= mal.last_accuracy <= 1.0, loss.item() > 0
        (True, True)
    """

    def __init__(self, dim: int, hidden: int = 256, grl_lambda: float = 1.0, normalize: bool = True) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"dim and hidden must be >= 1, got dim={dim}, hidden={hidden}")
        self.dim = dim
        self.normalize = normalize
        self.grl = GradientReversal(grl_lambda)
        self.classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.last_accuracy: float = float("nan")

    @property
    def grl_lambda(self) -> float:
        """The gradient reversal factor (settable, e.g. for a warm-up schedule)."""
        return self.grl.lambda_

    @grl_lambda.setter
    def grl_lambda(self, value: float) -> None:
        self.grl.lambda_ = float(value)

    def forward(self, audio_emb: Tensor, text_emb: Tensor) -> Tensor:
        """``audio_emb [N, D], text_emb [M, D] -> scalar`` (see the class docstring)."""
        check_embeddings(audio_emb, "audio_emb", dim=self.dim)
        check_embeddings(text_emb, "text_emb", dim=self.dim)
        x = torch.cat([audio_emb, text_emb], dim=0)
        if self.normalize:
            x = l2_normalize(x)
        logits = self.classifier(self.grl(x)).squeeze(1)
        n = audio_emb.shape[0]
        target = torch.cat([logits.new_ones(n), logits.new_zeros(text_emb.shape[0])])
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = 0.5 * bce[:n].mean() + 0.5 * bce[n:].mean()
        with torch.no_grad():
            correct = ((logits > 0).float() == target).float()
            self.last_accuracy = float(0.5 * correct[:n].mean() + 0.5 * correct[n:].mean())
        return loss

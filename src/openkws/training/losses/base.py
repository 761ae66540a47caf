"""Shared pieces of the metric-learning losses.

- :func:`cosine_matrix` and :func:`l2_normalize`: every loss L2-normalises its inputs itself.
- Pair functions of the general pair weighting framework (Asymmetric-Proxy paper, seed 002, Sec. 2):
  :func:`msp` (mean softplus, Eq. 4), :func:`else_` (extended log-sum-exp, Eq. 6-7) and :func:`lse`
  (plain log-sum-exp, Proxy-NCA). Each maps an argument matrix ``z [N, M]`` and a boolean mask of the
  pairs that count to one value per anchor ``[N]``.
- Input checks at the door (:func:`check_embeddings`, :func:`check_labels`, :func:`check_proxy_inputs`)
  that raise ``ValueError`` with a message saying what was expected.
- :class:`MetricLoss`: the base module with degenerate-batch accounting.

Degenerate batches. A batch on which a loss is undefined (no negatives because it holds one class, no
positive pair, ...) is never silently turned into a zero. The loss increments
:attr:`MetricLoss.degenerate_batches`, logs a warning on the ``openkws.training.losses`` logger, and returns a
zero that stays connected to the graph (``0 * (inputs.sum() + parameters.sum())``), so ``backward()``
works, every parameter receives a (zero) gradient (DDP needs that) and the trainer can log the count.
An empty batch (``B == 0``) is a caller bug and raises ``ValueError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger("openkws.training.losses")

NORM_EPS = 1e-12  # F.normalize eps: only guards all-zero vectors

# A pair function maps (z [N, M], mask [N, M] bool, scale: float | Tensor[N, 1]) to one value per anchor [N].
PairFunction = Callable[[Tensor, Tensor, "float | Tensor"], Tensor]

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def l2_normalize(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm: ``[N, D] -> [N, D]``.

    Example:
        >>> l2_normalize(torch.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """
    return F.normalize(x, p=2.0, dim=-1, eps=NORM_EPS)


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarities ``S_ij = cos(a_i, b_j)``: ``a [N, D], b [M, D] -> [N, M]``.

    Example:
        >>> cosine_matrix(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 5.0]]))
        tensor([[1., 0.]])
    """
    return l2_normalize(a) @ l2_normalize(b).transpose(0, 1)


def _per_anchor(scale: float | Tensor) -> float | Tensor:
    """A scale given as ``[N, 1]`` (one per anchor) as ``[N]``; floats and 0-d tensors unchanged."""
    return scale.reshape(-1) if isinstance(scale, Tensor) and scale.dim() == 2 else scale


def msp(z: Tensor, mask: Tensor, scale: float | Tensor) -> Tensor:
    """Mean-SoftPlus per anchor: ``1/|M_i| sum_{j in M_i} log(1 + exp(scale * z_ij))`` (seed 002, Eq. 4).

    ``z [N, M]`` is ``lambda - S`` for positives and ``S - lambda`` for negatives; ``mask [N, M]`` marks
    the pairs of each anchor's set; ``scale`` is alpha/beta (a float or ``[N, 1]``). Anchors with an
    empty set contribute 0. Returns ``[N]``.

    Example:
        >>> z = torch.tensor([[0.0, 0.0]])
        >>> msp(z, torch.tensor([[True, False]]), 2.0)  # log 2
        tensor([0.6931])
    """
    terms = F.softplus(scale * z) * mask
    return terms.sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def else_(z: Tensor, mask: Tensor, scale: float | Tensor) -> Tensor:
    """Extended-LogSumExp per anchor: ``1/scale * log(1 + sum_{j in M_i} exp(scale * z_ij))`` (seed 002, Eq. 6-7).

    ELSE is LSE over the set plus an extra zero argument; the zero column is appended explicitly, so
    an empty set gives exactly ``log(1) = 0`` with finite gradients. Shapes as in :func:`msp`.

    Example:
        >>> z = torch.tensor([[0.0, 0.0]])
        >>> else_(z, torch.tensor([[True, True]]), 1.0)  # log 3
        tensor([1.0986])
    """
    scaled = (scale * z).masked_fill(~mask, float("-inf"))
    zeros = torch.zeros_like(scaled[:, :1])
    return torch.logsumexp(torch.cat([scaled, zeros], dim=1), dim=1) / _per_anchor(scale)


def lse(z: Tensor, mask: Tensor, scale: float | Tensor) -> Tensor:
    """Plain LogSumExp per anchor: ``log sum_{j in M_i} exp(scale * z_ij)`` (Proxy-NCA; no margin, no 1/scale).

    Anchors with an empty set contribute 0 (LSE of an empty set is -inf; such anchors are skipped
    rather than allowed to produce -inf or NaN gradients). Shapes as in :func:`msp`.

    Example:
        >>> lse(torch.tensor([[0.0, 0.0]]), torch.tensor([[True, True]]), 1.0)  # log 2
        tensor([0.6931])
    """
    valid = mask.any(dim=1)
    out = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    if valid.any():
        s = scale[valid] if isinstance(scale, Tensor) else scale
        scaled = (s * z[valid]).masked_fill(~mask[valid], float("-inf"))
        out = out.masked_scatter(valid, torch.logsumexp(scaled, dim=1))
    return out


PAIR_FUNCTIONS: dict[str, PairFunction] = {"msp": msp, "else": else_, "lse": lse}


def check_embeddings(x: Tensor, name: str, dim: int | None = None, allow_empty: bool = False) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating ``[N, D]`` tensor (``N > 0`` unless ``allow_empty``)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [N, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); a loss needs at least one row")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has embedding dimension 0 (shape {tuple(x.shape)})")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have embedding dimension {dim}, got shape {tuple(x.shape)}")


def check_labels(labels: Tensor, batch: int, num_classes: int | None = None, name: str = "labels") -> None:
    """Raise ``ValueError`` unless ``labels`` is an integer ``[batch]`` tensor with values in ``[0, num_classes)``."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [{batch}], got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must have shape [{batch}] (one per embedding), got {tuple(labels.shape)}")
    if labels.dtype not in _INT_DTYPES:
        raise ValueError(f"{name} must be an integer (long) tensor, got dtype {labels.dtype}")
    if batch and num_classes is not None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{lo}, {hi}]")


def check_proxy_inputs(audio_emb: Tensor, proxies: Tensor, labels: Tensor) -> None:
    """Checks for the proxy-family signature ``audio_emb [B, D], proxies [C, D], labels [B] in [0, C)``."""
    check_embeddings(audio_emb, "audio_emb")
    check_embeddings(proxies, "proxies", dim=audio_emb.shape[1])
    check_labels(labels, audio_emb.shape[0], proxies.shape[0])


class MetricLoss(nn.Module):
    """Base class of every loss here: counts degenerate batches (see the module docstring).

    Example:
        >>> loss = MetricLoss()
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> zero = loss._degenerate("a single class", x)
        >>> zero.item(), loss.degenerate_batches
        (0.0, 1)
        >>> zero.backward(); x.grad.abs().sum().item()
        0.0
    """

    def __init__(self) -> None:
        super().__init__()
        self._degenerate_batches = 0

    @property
    def degenerate_batches(self) -> int:
        """How many batches this instance has seen on which the loss was undefined."""
        return self._degenerate_batches

    def _degenerate(self, reason: str, *inputs: Tensor) -> Tensor:
        """Count, warn and return a zero connected to ``inputs`` and to this module's parameters."""
        self._degenerate_batches += 1
        logger.warning(
            "%s: degenerate batch (%s); returning a zero loss that keeps the graph (count=%d)",
            type(self).__name__,
            reason,
            self._degenerate_batches,
        )
        total = sum((t.sum() for t in inputs), torch.zeros((), device=inputs[0].device))
        for p in self.parameters():
            total = total + p.sum()
        return total * 0.0

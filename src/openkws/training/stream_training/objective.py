"""The stream objective: each spoken phrase's keyword-end window must beat every window that is not.

For a stream ``b`` that says phrase ``q`` (positive windows: those ending 0-200 ms after it),
``s⁺ = max`` of its positive windows' cosines with ``q``'s proxy (the engine fires on the best
window), and the negatives are every other window of the batch that does not say ``q``, its own
partial and late windows included. The loss is a smooth maximum of the violations

    L(b, q) = (1/γ) · log(1 + Σₙ exp(γ (sₙ − s⁺ + m)))

so the hardest negatives dominate, which is what a stream's false-alarm tail asks for. The mined
term (row M) uses the same form with bank phrases as the negatives of the positive window.

Example (one positive window at 0.8, negatives at 0.1 and 0.75, margin 0.1):
    >>> import torch
    >>> s_pos, s_neg = torch.tensor(0.8), torch.tensor([0.1, 0.75])
    >>> round(float(smooth_margin(s_pos, s_neg, scale=16.0, margin=0.1)), 3)
    0.073
    >>> float(smooth_margin(s_pos, s_neg[:0], scale=16.0, margin=0.1))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_margin(s_pos: torch.Tensor, s_neg: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """``(1/γ) log(1 + Σ exp(γ (s_neg − s_pos + m)))``; 0 for no negatives (defined, not NaN)."""
    if s_neg.numel() == 0:
        return s_pos.new_zeros(())
    z = scale * (s_neg - s_pos + margin)
    return F.softplus(torch.logsumexp(z, dim=0)) / scale


def stream_loss(
    scores: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    scale: float,
    margin: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [N, Q] window x phrase cosines; positive [N, Q] / negative [N, Q] bool masks.

    Returns (mean loss over phrases with a positive window, index [Q] of each phrase's best
    positive window, -1 where it has none)."""
    if scores.shape != positive.shape or scores.shape != negative.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and masks must have one shape")
    if bool((positive & negative).any()):
        raise ValueError("a window cannot be both a positive and a negative for one phrase")
    losses = []
    best = torch.full((scores.shape[1],), -1, dtype=torch.long)
    for q in range(scores.shape[1]):
        pos = torch.nonzero(positive[:, q]).flatten()
        if len(pos) == 0:
            continue
        k = pos[torch.argmax(scores[pos, q])]
        best[q] = k
        losses.append(smooth_margin(scores[k, q], scores[negative[:, q], q], scale, margin))
    if not losses:
        return scores.new_zeros(()), best
    return torch.stack(losses).mean(), best

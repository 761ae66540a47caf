"""Background-negative loss: windows that hold no keyword must score below the margin against
every proxy in the batch.

The proxy losses only compare keyword windows with keyword proxies, so nothing teaches the model
what a stream mostly contains: running speech, the first words of a phrase ("turn on the" for
"turn on the lights"), a phrase one word away, a keyword cut off by the window edge. Each such
window ``b`` is a negative anchor for the proxies ``p_j`` it may be compared with (``mask``): a
proxy whose words the window really contains is masked out by the caller.

    L = mean_b  pair_fn_{j in M_b}( S_bj - lambda ; beta ),   S_bj = cos(b, p_j)

with ``pair = "else"`` (default: ``1/beta log(1 + sum_j exp(beta (S_bj - lambda)))``, dominated by
the proxy the window is closest to, which is the one that fires in a stream) or ``"msp"`` (the
mean softplus the Asymmetric-Proxy loss uses for its negatives). ``lambda`` is the proxy losses'
margin (0.5) and ``beta`` their negative scale (50), so a background window is held to the same
standard as a wrong keyword.

A short keyword's proxy sits close to pieces of ordinary speech, so holding every background
window below one margin drags the short word's own windows down with it (docs/RESULTS.md, issue
11: 1-3-phone keywords lost most). ``margins [K]`` replaces ``lambda`` per proxy; the objective
raises it for short keywords (:func:`length_margins`), where the stream's per-keyword calibrated
threshold, not the loss, keeps the false alarms down.

Example:
    >>> loss = BackgroundNegativeLoss(scale=1.0, margin=0.0)
    >>> bg = torch.tensor([[1.0, 0.0]]); proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(loss(bg, proxies, torch.tensor([[True, True]])).item(), 4)  # log(1 + e^1 + e^0)
    1.5514
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from openkws.training.losses.base import PAIR_FUNCTIONS, MetricLoss, check_embeddings, cosine_matrix


class BackgroundNegativeLoss(MetricLoss):
    def __init__(
        self, scale: float = 50.0, margin: float = 0.5, pair: Literal["else", "msp"] = "else"
    ) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"background loss scale must be positive, got {scale}")
        if pair not in ("else", "msp"):
            raise ValueError(f"background loss pair function must be 'else' or 'msp', got {pair!r}")
        self.scale, self.margin, self.pair = float(scale), float(margin), pair

    def forward(
        self, background: Tensor, proxies: Tensor, mask: Tensor, margins: Tensor | None = None
    ) -> Tensor:
        """``background [N, D]``, ``proxies [K, D]``, ``mask [N, K]`` bool (True = a valid negative),
        ``margins [K]`` (default: the loss's one margin for every proxy). Windows with no valid
        proxy are left out; if none is left the batch is degenerate."""
        check_embeddings(background, "background")
        check_embeddings(proxies, "proxies", dim=background.shape[1])
        if mask.shape != (background.shape[0], proxies.shape[0]) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {(background.shape[0], proxies.shape[0])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if margins is not None and margins.shape != (proxies.shape[0],):
            raise ValueError(f"margins must have shape {(proxies.shape[0],)}, got {tuple(margins.shape)}")
        rows = mask.any(dim=1)
        if not rows.any():
            return self._degenerate("no background window has a valid proxy", background, proxies)
        z = cosine_matrix(background[rows], proxies) - (
            self.margin if margins is None else margins.unsqueeze(0)
        )
        return PAIR_FUNCTIONS[self.pair](z, mask[rows], self.scale).mean()


def length_margins(phones: Tensor, margin: float, bonus: float, short_phones: int) -> Tensor:
    """Per-proxy margins: ``margin + bonus`` for a one-phone keyword, falling linearly to ``margin``
    at ``short_phones`` phones and beyond.

    >>> [round(m, 3) for m in length_margins(torch.tensor([1, 3, 6, 12]), 0.5, 0.15, 6).tolist()]
    [0.65, 0.59, 0.5, 0.5]
    """
    if short_phones < 2:
        raise ValueError(f"short_phones must be at least 2, got {short_phones}")
    ramp = ((short_phones - phones.float()) / (short_phones - 1)).clamp(0.0, 1.0)
    return margin + bonus * ramp


def acoustic_proxies(windows: Tensor, labels: Tensor, num_keywords: int) -> tuple[Tensor, Tensor]:
    """Each keyword's mean unit-length window of the batch ``[K, D]`` (what a TTS proxy is made
    of), and a ``[1, K]`` mask of the keywords that have a window.

    >>> ac, present = acoustic_proxies(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), 2)
    >>> ac.tolist(), present.tolist()
    ([[0.5, 0.5], [0.0, 0.0]], [[True, False]])
    """
    unit = torch.nn.functional.normalize(windows, dim=1)
    sums = torch.zeros(num_keywords, windows.shape[1], dtype=windows.dtype, device=windows.device)
    sums = sums.index_add(0, labels, unit)
    counts = torch.bincount(labels, minlength=num_keywords)
    return sums / counts.clamp_min(1).unsqueeze(1).to(windows.dtype), (counts > 0).unsqueeze(0)

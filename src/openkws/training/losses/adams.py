"""AdaMS: adaptive (learnable) margins and scales (Jung & Kim, 2022, arXiv 2210.14564), applied to
AsyP as in ADML's phoneme-level "AsyP+AdaMS" (seed 001)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from openkws.training.losses.asymmetric_proxy import AsymmetricProxyLoss
from openkws.training.losses.proxy_pair import Reduction


class AdaMSLoss(AsymmetricProxyLoss):
    r"""AsyP whose scales ``alpha, beta`` and margin ``lambda`` are learnable, one set per class.

    Signature: ``forward(audio_emb [B, D], proxies [C, D], labels [B] in [0, C),
    class_ids: LongTensor[C] | None = None) -> scalar``.

    ``class_ids[c]`` is the *global* class id (for example the phoneme id) of proxy ``c``; the
    parameters of anchor ``i`` are those of class ``g_i = class_ids[labels[i]]``. Without
    ``class_ids``, ``g_i = labels[i]`` (so ``C <= num_classes`` is required), and with
    ``num_classes=1`` every anchor shares one set. ADML uses one set per phoneme class at the
    phoneme level: ``AdaMSLoss(num_classes=len(PHONEMES))`` with ``class_ids`` = phoneme ids.

    Formula: seed 002, Eq. 11 with per-anchor parameters::

        L = sum_i [ 1/alpha_{g_i} log(1 + sum_{j in P_i} exp(alpha_{g_i} (lambda_{g_i} - S^A_ij)))
                  + 1/|N_i| sum_{k in N_i} log(1 + exp(beta_{g_i} (S^{P/N}_ik - lambda_{g_i}))) ]

    The anchor's class is the class of the proxy in the type-A term and of the clip in the P/N term;
    in both cases it is ``c_i``. Parameters start at AsyP's ``alpha=2, beta=50, lambda=0.5``, so at
    initialisation this loss equals :class:`AsymmetricProxyLoss`.

    Parameterisation: ``log_alpha``, ``log_beta`` (so the scales stay positive) and ``margin`` are
    ``nn.Parameter`` s of shape ``[num_classes]``; give them to the optimizer with the model's.
    Note: with the ``1/alpha`` factor the ELSE term decreases monotonically in ``alpha`` (it tends to
    the hinge ``max(0, max_j lambda - S_ij)``), so the positive scale drifts upwards unless the
    weight decay / learning rate for loss parameters holds it; watch it in the logs (``alphas``).

    Degenerate batch: one class (no negatives); counted, logged, graph-connected zero (the zero is
    also connected to the AdaMS parameters, so DDP sees a gradient for each).

    Example:
        >>> import torch
        >>> adams = AdaMSLoss(num_classes=40)
        >>> audio, proxies = torch.eye(3), torch.eye(3)
        >>> loss = adams(audio, proxies, torch.tensor([0, 1, 2]), class_ids=torch.tensor([7, 3, 39]))
        >>> loss.backward()
        >>> bool(adams.margin.grad[7] != 0), bool(adams.margin.grad[0] == 0)
        (True, True)
    """

    # a float in the fixed-margin parent; learnable here under the same name, the state_dict key
    margin: nn.Parameter  # type: ignore[assignment]

    def __init__(
        self,
        num_classes: int = 1,
        alpha: float = 2.0,
        beta: float = 50.0,
        margin: float = 0.5,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, margin=margin, reduction=reduction)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.log_alpha = nn.Parameter(torch.full((num_classes,), math.log(alpha)))
        self.log_beta = nn.Parameter(torch.full((num_classes,), math.log(beta)))
        self.margin = nn.Parameter(torch.full((num_classes,), float(margin)))

    @property
    def alphas(self) -> Tensor:
        """Current positive scales ``[num_classes]`` (for logging)."""
        return self.log_alpha.detach().exp()

    @property
    def betas(self) -> Tensor:
        """Current negative scales ``[num_classes]`` (for logging)."""
        return self.log_beta.detach().exp()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, F_P=else(a), F_N=msp(pn), reduction={self.reduction}"

    def forward(
        self, audio_emb: Tensor, proxies: Tensor, labels: Tensor, class_ids: Tensor | None = None
    ) -> Tensor:
        """``audio_emb [B, D], proxies [C, D], labels [B], class_ids [C] | None -> scalar``."""
        return self._loss(audio_emb, proxies, labels, class_ids)

    def _global_ids(self, labels: Tensor, class_ids: Tensor | None) -> Tensor:
        if self.num_classes == 1 and class_ids is None:
            return torch.zeros_like(labels)
        if class_ids is None:
            ids = labels
        else:
            if class_ids.dim() != 1 or class_ids.dtype.is_floating_point:
                raise ValueError(
                    f"class_ids must be an integer tensor [C], got {tuple(class_ids.shape)} {class_ids.dtype}"
                )
            if int(labels.max()) >= class_ids.shape[0]:
                raise ValueError(
                    f"class_ids has {class_ids.shape[0]} entries but labels reach {int(labels.max())}"
                )
            ids = class_ids.to(labels.device).long()[labels]
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"global class ids must lie in [0, {self.num_classes}) (num_classes), got [{lo}, {hi}]; "
                "pass class_ids or build AdaMSLoss(num_classes=...) large enough"
            )
        return ids

    def scales_and_margin(
        self, labels: Tensor, class_ids: Tensor | None
    ) -> tuple[float | Tensor, float | Tensor, float | Tensor]:
        ids = self._global_ids(labels, class_ids)
        return (
            self.log_alpha.exp()[ids].unsqueeze(1),
            self.log_beta.exp()[ids].unsqueeze(1),
            self.margin[ids].unsqueeze(1),
        )

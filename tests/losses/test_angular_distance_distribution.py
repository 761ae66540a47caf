"""ADD (seed 004): closed form from the paper's Eq. 1-5 on 2-D angle cases, degenerate batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openkws.training.losses import AngularDistanceDistributionLoss

DEG = [0.0, 30.0, 100.0, 130.0, 170.0, 250.0]
LABELS = [0, 0, 1, 1, 1, 2]


def reference(l1: float = 1.0, l2: float = 1.0, l3: float = 1.0, l4: float = 1.0) -> float:
    """D_p / D_n over ordered pairs i != j, mean and Bessel-corrected std (numpy ddof=1)."""
    dp, dn = [], []
    for i in range(len(DEG)):
        for j in range(len(DEG)):
            if i == j:
                continue
            d_c = 1.0 - math.cos(math.radians(DEG[i] - DEG[j]))
            (dp if LABELS[i] == LABELS[j] else dn).append(
                d_c**2 if LABELS[i] == LABELS[j] else (1 - d_c) ** 2
            )
    return l1 * np.mean(dp) + l2 * np.std(dp, ddof=1) + l3 * np.mean(dn) + l4 * np.std(dn, ddof=1)


def test_closed_form(unit) -> None:
    loss = AngularDistanceDistributionLoss()(unit(DEG, [1, 2, 3, 1, 2, 3]), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(), rel=1e-5)


def test_weights(unit) -> None:
    loss = AngularDistanceDistributionLoss(0.5, 2.0, 0.0, 3.0)(unit(DEG), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(0.5, 2.0, 0.0, 3.0), rel=1e-5)


def test_equal_distances_give_finite_gradients(unit) -> None:
    """Two clips per class at identical offsets: sigma_p is 0, its gradient must not be NaN."""
    emb = unit([0.0, 20.0, 90.0, 110.0]).requires_grad_(True)
    loss = AngularDistanceDistributionLoss()(emb, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize(("labels", "reason"), [([0, 1, 2], "D_p is empty"), ([4, 4, 4], "D_n is empty")])
def test_degenerate(unit, caplog: pytest.LogCaptureFixture, labels: list[int], reason: str) -> None:
    loss_fn = AngularDistanceDistributionLoss()
    emb = unit([0.0, 50.0, 120.0]).requires_grad_(True)
    loss = loss_fn(emb, torch.tensor(labels))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    assert reason in caplog.text
    loss.backward()
    assert emb.grad is not None


def test_empty_batch_raises() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        AngularDistanceDistributionLoss()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))

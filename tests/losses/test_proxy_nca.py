"""ProxyNCALoss (seed 002, Table 1 baseline): closed-form values for both similarity types, degenerate batches."""

from __future__ import annotations

import math

import pytest
import torch

from openkws.training.losses import ProxyNCALoss

AUDIO_DEG = [0.0, 40.0, 100.0, 150.0, 260.0, 300.0]
LABELS = [0, 0, 1, 1, 2, 2]
PROXY_DEG = [20.0, 120.0, 240.0]


@pytest.mark.parametrize("similarity", ["pn", "a"])
def test_closed_form(unit, proxy_ref, similarity: str) -> None:
    loss = ProxyNCALoss(similarity=similarity)(
        unit(AUDIO_DEG, [1, 2, 3, 1, 2, 3]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "lse", "lse", similarity, similarity, 1.0, 1.0, 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hyperparameters(unit, proxy_ref) -> None:
    loss = ProxyNCALoss(scale=4.0, similarity="pn")(unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "lse", "lse", "pn", "pn", 4.0, 4.0, 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_types_differ(unit) -> None:
    args = (unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    assert ProxyNCALoss(similarity="pn")(*args).item() != pytest.approx(
        ProxyNCALoss(similarity="a")(*args).item(), rel=1e-4
    )


def test_single_class_is_degenerate(unit) -> None:
    loss_fn = ProxyNCALoss()
    audio = unit([0.0, 50.0]).requires_grad_(True)
    loss = loss_fn(audio, unit([0.0]), torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None and audio.grad.abs().sum() == 0


def test_rejects_bad_similarity_type_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="similarity"):
        ProxyNCALoss(similarity="ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        ProxyNCALoss()(torch.zeros(0, 2), torch.zeros(1, 2), torch.zeros(0, dtype=torch.long))


def test_single_positive_is_original_proxy_nca(unit) -> None:
    """With one clip per class: -log(exp(s cos(a, p_y)) / sum_{z != y} exp(s cos(a, p_z))), summed."""
    deg, proxy_deg = [10.0, 100.0, 200.0], [0.0, 90.0, 180.0]
    loss = ProxyNCALoss(scale=2.0)(unit(deg), unit(proxy_deg), torch.tensor([0, 1, 2]))
    expected = 0.0
    for i in range(3):
        pos = 2.0 * math.cos(math.radians(deg[i] - proxy_deg[i]))
        negs = [math.exp(2.0 * math.cos(math.radians(deg[i] - proxy_deg[k]))) for k in range(3) if k != i]
        expected += -math.log(math.exp(pos) / sum(negs))
    assert loss.item() == pytest.approx(expected, rel=1e-5)

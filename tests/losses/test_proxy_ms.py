"""ProxyMSLoss (seed 002, Table 1 baseline): closed-form values for both similarity types, degenerate batches."""

from __future__ import annotations

import pytest
import torch

from openkws.training.losses import ProxyMSLoss

AUDIO_DEG = [0.0, 40.0, 100.0, 150.0, 260.0, 300.0]
LABELS = [0, 0, 1, 1, 2, 2]
PROXY_DEG = [20.0, 120.0, 240.0]


@pytest.mark.parametrize("similarity", ["pn", "a"])
def test_closed_form(unit, proxy_ref, similarity: str) -> None:
    loss = ProxyMSLoss(similarity=similarity)(
        unit(AUDIO_DEG, [1, 2, 3, 1, 2, 3]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "else", "else", similarity, similarity, 2.0, 50.0, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hyperparameters(unit, proxy_ref) -> None:
    loss = ProxyMSLoss(alpha=1.0, beta=8.0, margin=0.3)(
        unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "else", "else", "pn", "pn", 1.0, 8.0, 0.3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_types_differ(unit) -> None:
    args = (unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    assert ProxyMSLoss(similarity="pn")(*args).item() != pytest.approx(
        ProxyMSLoss(similarity="a")(*args).item(), rel=1e-4
    )


def test_single_class_is_degenerate(unit) -> None:
    loss_fn = ProxyMSLoss()
    audio = unit([0.0, 50.0]).requires_grad_(True)
    loss = loss_fn(audio, unit([0.0]), torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None and audio.grad.abs().sum() == 0


def test_rejects_bad_similarity_type_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="similarity"):
        ProxyMSLoss(similarity="ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        ProxyMSLoss()(torch.zeros(0, 2), torch.zeros(1, 2), torch.zeros(0, dtype=torch.long))

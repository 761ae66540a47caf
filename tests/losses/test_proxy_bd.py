"""ProxyBDLoss (seed 002, Table 1 baseline): closed-form values for both similarity types, degenerate batches."""

from __future__ import annotations

import pytest
import torch

from openkws.training.losses import ProxyBDLoss

AUDIO_DEG = [0.0, 40.0, 100.0, 150.0, 260.0, 300.0]
LABELS = [0, 0, 1, 1, 2, 2]
PROXY_DEG = [20.0, 120.0, 240.0]


@pytest.mark.parametrize("similarity", ["pn", "a"])
def test_closed_form(unit, proxy_ref, similarity: str) -> None:
    loss = ProxyBDLoss(similarity=similarity)(
        unit(AUDIO_DEG, [1, 2, 3, 1, 2, 3]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "msp", "msp", similarity, similarity, 2.0, 50.0, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hyperparameters(unit, proxy_ref) -> None:
    loss = ProxyBDLoss(alpha=1.0, beta=8.0, margin=0.3)(
        unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    expected = proxy_ref(AUDIO_DEG, PROXY_DEG, LABELS, "msp", "msp", "pn", "pn", 1.0, 8.0, 0.3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_types_coincide_on_balanced_batches_only(unit) -> None:
    """With MSP on both terms, types P/N and A give the same sum when every |N_i| is equal (a K x M
    batch): each (clip, other-class proxy) pair is then counted once either way. They differ otherwise."""
    balanced = (unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    pn, a = ProxyBDLoss(similarity="pn")(*balanced).item(), ProxyBDLoss(similarity="a")(*balanced).item()
    assert pn == pytest.approx(a, rel=1e-5)
    unbalanced = (unit(AUDIO_DEG[:5]), unit(PROXY_DEG), torch.tensor(LABELS[:5]))
    soft = {"beta": 8.0, "margin": 0.2}  # so that the negatives are not all ~e^-25
    pn = ProxyBDLoss(similarity="pn", **soft)(*unbalanced).item()
    a = ProxyBDLoss(similarity="a", **soft)(*unbalanced).item()
    assert abs(pn - a) > 1e-4


def test_single_class_is_degenerate(unit) -> None:
    loss_fn = ProxyBDLoss()
    audio = unit([0.0, 50.0]).requires_grad_(True)
    loss = loss_fn(audio, unit([0.0]), torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None and audio.grad.abs().sum() == 0


def test_rejects_bad_similarity_type_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="similarity"):
        ProxyBDLoss(similarity="ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        ProxyBDLoss()(torch.zeros(0, 2), torch.zeros(1, 2), torch.zeros(0, dtype=torch.long))

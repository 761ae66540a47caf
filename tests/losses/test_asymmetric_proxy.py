"""AsyP (seed 002, Eq. 11): closed-form values on 2-D angle cases, normalisation, degenerate batches."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from openkws.training.losses import AsymmetricProxyLoss

AUDIO_DEG = [0.0, 40.0, 100.0, 150.0, 260.0]
RADII = [1.0, 2.0, 0.5, 3.0, 1.5]  # non-unit norms: the loss must normalise itself
LABELS = [0, 0, 1, 1, 2]
PROXY_DEG = [20.0, 120.0, 240.0]


def eq11(alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5) -> float:
    """Eq. 11 written out: ELSE over S^A = cos(t_i, a_j) for positives, MSP over S^{P/N} = cos(a_i, t_k)."""
    total = 0.0
    for i, ci in enumerate(LABELS):
        t_i = PROXY_DEG[ci]
        pos = sum(
            math.exp(alpha * (lam - math.cos(math.radians(t_i - AUDIO_DEG[j]))))
            for j, cj in enumerate(LABELS)
            if cj == ci
        )
        negs = [
            math.log1p(math.exp(beta * (math.cos(math.radians(AUDIO_DEG[i] - PROXY_DEG[ck])) - lam)))
            for ck in LABELS
            if ck != ci
        ]
        total += math.log1p(pos) / alpha + sum(negs) / len(negs)
    return total


def test_closed_form_eq11(unit) -> None:
    loss = AsymmetricProxyLoss()(
        unit(AUDIO_DEG, RADII), unit(PROXY_DEG, [2.0, 1.0, 4.0]), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(eq11(), rel=1e-5)


def test_defaults_are_the_papers() -> None:
    loss = AsymmetricProxyLoss()
    assert (loss.alpha, loss.beta, loss.margin, loss.reduction) == (2.0, 50.0, 0.5, "sum")
    assert (loss.pos_fn, loss.pos_similarity, loss.neg_fn, loss.neg_similarity) == ("else", "a", "msp", "pn")


def test_other_hyperparameters(unit) -> None:
    loss = AsymmetricProxyLoss(alpha=3.0, beta=10.0, margin=0.2)(
        unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(eq11(3.0, 10.0, 0.2), rel=1e-5)


def test_matches_generic_reference_and_differs_from_pn_positives(unit, proxy_ref) -> None:
    """Type A positives (proxy as anchor) are not the same as type P/N positives in the multi-view batch."""
    args = (AUDIO_DEG, PROXY_DEG, LABELS)
    asyp = proxy_ref(*args, "else", "msp", "a", "pn", 2.0, 50.0, 0.5)
    pn_variant = proxy_ref(*args, "else", "msp", "pn", "pn", 2.0, 50.0, 0.5)
    assert asyp == pytest.approx(eq11(), rel=1e-9)
    assert abs(asyp - pn_variant) > 1e-4


def test_sum_over_anchors_not_mean(unit) -> None:
    """Eq. 11 sums the anchors: the value grows with the batch; reduction='mean' divides by N."""
    audio, proxies, labels = unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)
    total = AsymmetricProxyLoss()(audio, proxies, labels)
    mean = AsymmetricProxyLoss(reduction="mean")(audio, proxies, labels)
    assert mean.item() == pytest.approx(total.item() / len(LABELS), rel=1e-6)


def test_extra_proxies_without_clips_take_no_part(unit) -> None:
    audio, labels = unit(AUDIO_DEG), torch.tensor(LABELS)
    base = AsymmetricProxyLoss()(audio, unit(PROXY_DEG), labels)
    more = AsymmetricProxyLoss()(audio, unit([*PROXY_DEG, 5.0, 95.0]), labels)
    assert more.item() == pytest.approx(base.item(), rel=1e-6)


def test_single_class_is_degenerate_and_connected(unit, caplog: pytest.LogCaptureFixture) -> None:
    audio = unit([0.0, 30.0]).requires_grad_(True)
    proxies = unit([10.0, 200.0]).requires_grad_(True)
    loss_fn = AsymmetricProxyLoss()
    with caplog.at_level(logging.WARNING, logger="openkws.training.losses"):
        loss = loss_fn(audio, proxies, torch.tensor([1, 1]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    assert "no negatives" in caplog.text
    loss.backward()
    assert audio.grad is not None and proxies.grad is not None


def test_empty_batch_and_bad_shapes_raise() -> None:
    loss_fn = AsymmetricProxyLoss()
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(torch.zeros(0, 4), torch.randn(3, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss_fn(torch.randn(4, 4), torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        loss_fn(torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0, 3]))


def test_gradient_pulls_clip_towards_own_proxy(unit) -> None:
    audio = unit([60.0, 150.0]).requires_grad_(True)
    proxies = unit([0.0, 180.0])
    AsymmetricProxyLoss()(audio, proxies, torch.tensor([0, 1])).backward()
    # clip 0 at 60 deg, own proxy at 0 deg: descending moves it towards +x, i.e. the gradient's x is negative
    assert audio.grad[0, 0] < 0

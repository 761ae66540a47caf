"""SphereFace2: closed form on 2-D angle cases, bias initialisation, learnable parameters."""

from __future__ import annotations

import math

import pytest
import torch

from openkws.training.losses import SphereFace2Loss
from openkws.training.losses.sphereface2 import initial_bias

W_DEG = [0.0, 120.0, 240.0]
AUDIO_DEG = [10.0, 100.0, 250.0, 30.0]
LABELS = [0, 1, 2, 1]


def reference(r: float, m: float, lam: float, t: float | None, b: float) -> float:
    def g(z: float) -> float:
        return z if t is None else 2 * ((z + 1) / 2) ** t - 1

    total = 0.0
    for deg, y in zip(AUDIO_DEG, LABELS, strict=True):
        for j, w in enumerate(W_DEG):
            c = math.cos(math.radians(deg - w))
            if j == y:
                total += lam / r * math.log1p(math.exp(-(r * (g(c) - m) + b)))
            else:
                total += (1 - lam) / r * math.log1p(math.exp(r * (g(c) + m) + b))
    return total / len(LABELS)


@pytest.mark.parametrize(("r", "m", "lam", "t"), [(32.0, 0.2, 0.7, 3.0), (8.0, 0.3, 0.5, None)])
def test_closed_form(unit, r: float, m: float, lam: float, t: float | None) -> None:
    loss_fn = SphereFace2Loss(dim=2, num_classes=3, r=r, m=m, lam=lam, t=t)
    with torch.no_grad():
        loss_fn.weight.copy_(unit(W_DEG, [3.0, 0.5, 2.0]))  # weights are normalised in the forward
        loss_fn.bias.fill_(-1.5)
    loss = loss_fn(unit(AUDIO_DEG, [2.0, 1.0, 0.7, 1.3]), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(r, m, lam, t, -1.5), rel=1e-5)


@pytest.mark.parametrize("t", [3.0, None])
def test_initial_bias_zeroes_the_bias_gradient_at_cos_zero(t: float | None) -> None:
    c, r, m, lam = 50, 32.0, 0.2, 0.7
    b = initial_bias(c, r, m, lam, t)
    g0 = 0.0 if t is None else 2 * 0.5**t - 1
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # d/db of lam/r softplus(-(r(g0 - m) + b)) + (1 - lam)/r (C - 1) softplus(r(g0 + m) + b)
    grad = -lam / r * sig(-(r * (g0 - m) + b)) + (1 - lam) / r * (c - 1) * sig(r * (g0 + m) + b)
    assert abs(grad) < 1e-9
    assert SphereFace2Loss(dim=8, num_classes=c, r=r, m=m, lam=lam, t=t).bias.item() == pytest.approx(
        b, rel=1e-6
    )


def test_parameters_change_after_one_step() -> None:
    loss_fn = SphereFace2Loss(dim=4, num_classes=5)
    before = {n: p.detach().clone() for n, p in loss_fn.named_parameters()}
    assert set(before) == {"weight", "bias"}
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    loss_fn(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).backward()
    opt.step()
    for name, p in loss_fn.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name


def test_one_class_batch_is_not_degenerate() -> None:
    loss_fn = SphereFace2Loss(dim=4, num_classes=5)
    assert loss_fn(torch.randn(3, 4), torch.tensor([2, 2, 2])).item() > 0
    assert loss_fn.degenerate_batches == 0


def test_bad_inputs_raise() -> None:
    loss_fn = SphereFace2Loss(dim=4, num_classes=5)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        loss_fn(torch.randn(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="dimension 4"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        SphereFace2Loss(dim=4, num_classes=1)

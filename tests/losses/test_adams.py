"""AdaMS (AsyP with learnable per-class scales and margins): closed form, lookups, learnable parameters."""

from __future__ import annotations

import math

import pytest
import torch

from openkws.training.losses import AdaMSLoss, AsymmetricProxyLoss

AUDIO_DEG = [0.0, 40.0, 100.0, 150.0, 260.0]
LABELS = [0, 0, 1, 1, 2]
PROXY_DEG = [20.0, 120.0, 240.0]


def reference(alpha: list[float], beta: list[float], lam: list[float], gid: list[int]) -> float:
    """Eq. 11 with the parameters of anchor i's global class gid[c_i]."""
    total = 0.0
    for i, ci in enumerate(LABELS):
        a, b, m = alpha[gid[ci]], beta[gid[ci]], lam[gid[ci]]
        pos = sum(
            math.exp(a * (m - math.cos(math.radians(PROXY_DEG[ci] - AUDIO_DEG[j]))))
            for j, cj in enumerate(LABELS)
            if cj == ci
        )
        negs = [
            math.log1p(math.exp(b * (math.cos(math.radians(AUDIO_DEG[i] - PROXY_DEG[ck])) - m)))
            for ck in LABELS
            if ck != ci
        ]
        total += math.log1p(pos) / a + sum(negs) / len(negs)
    return total


def test_equals_asyp_at_initialisation(unit) -> None:
    args = (unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    assert AdaMSLoss()(*args).item() == pytest.approx(AsymmetricProxyLoss()(*args).item(), rel=1e-6)
    assert AdaMSLoss(num_classes=3)(*args).item() == pytest.approx(
        AsymmetricProxyLoss()(*args).item(), rel=1e-6
    )


def test_per_class_parameters_via_class_ids(unit) -> None:
    loss_fn = AdaMSLoss(num_classes=6)
    alpha = [1.0, 2.0, 3.0, 1.5, 2.5, 4.0]
    beta = [10.0, 20.0, 30.0, 15.0, 25.0, 40.0]
    lam = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    with torch.no_grad():
        loss_fn.log_alpha.copy_(torch.tensor(alpha).log())
        loss_fn.log_beta.copy_(torch.tensor(beta).log())
        loss_fn.margin.copy_(torch.tensor(lam))
    class_ids = [5, 2, 3]  # proxy c is global class class_ids[c]
    loss = loss_fn(unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS), class_ids=torch.tensor(class_ids))
    assert loss.item() == pytest.approx(reference(alpha, beta, lam, class_ids), rel=1e-5)
    # without class_ids the labels are the global ids
    loss = loss_fn(unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(reference(alpha, beta, lam, [0, 1, 2]), rel=1e-5)


def test_parameters_change_after_one_step(unit) -> None:
    loss_fn = AdaMSLoss(num_classes=4)
    before = {n: p.detach().clone() for n, p in loss_fn.named_parameters()}
    assert set(before) == {"log_alpha", "log_beta", "margin"}
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    # hard negatives (other proxies within ~50 degrees), so that every scale gets a visible gradient
    audio, proxies = unit([0.0, 20.0, 40.0, 60.0, 80.0]), unit([10.0, 50.0, 70.0])
    loss_fn(audio, proxies, torch.tensor(LABELS), class_ids=torch.tensor([0, 1, 3])).backward()
    opt.step()
    for name, p in loss_fn.named_parameters():
        changed = p.detach() != before[name]
        assert changed[[0, 1, 3]].all(), name  # classes present in the batch moved
        assert not changed[2].any(), name  # class 2 is absent: untouched


def test_out_of_range_ids_raise(unit) -> None:
    args = (unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS))
    with pytest.raises(ValueError, match="num_classes"):
        AdaMSLoss(num_classes=2)(*args)
    with pytest.raises(ValueError, match="num_classes"):
        AdaMSLoss(num_classes=4)(*args, class_ids=torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="class_ids has 2 entries"):
        AdaMSLoss(num_classes=4)(*args, class_ids=torch.tensor([0, 1]))


def test_degenerate_zero_reaches_the_parameters(unit) -> None:
    loss_fn = AdaMSLoss(num_classes=3)
    loss = loss_fn(unit([0.0, 10.0]), unit([5.0]), torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in loss_fn.parameters())

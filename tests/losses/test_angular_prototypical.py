"""AP (in-batch, leave-one-out centroids) and AP-FC (proxies as class weights): closed forms, parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openkws.training.losses import AngularPrototypicalFCLoss, AngularPrototypicalLoss

AUDIO_DEG = [0.0, 40.0, 100.0, 130.0, 170.0, 260.0]
LABELS = [0, 0, 1, 1, 1, 2]  # class 2 has one clip: a centroid for others, never a query
PROXY_DEG = [20.0, 120.0, 240.0, 300.0]


def vec(deg: float) -> np.ndarray:
    return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def ce(logits: list[float], target: int) -> float:
    m = max(logits)
    return -(logits[target] - m - math.log(sum(math.exp(z - m) for z in logits)))


def ap_ref(w: float, b: float) -> float:
    classes = sorted(set(LABELS))
    losses = []
    for i, yi in enumerate(LABELS):
        own = [j for j, y in enumerate(LABELS) if y == yi and j != i]
        if not own:
            continue
        logits = []
        for k in classes:
            members = own if k == yi else [j for j, y in enumerate(LABELS) if y == k]
            centroid = np.mean([vec(AUDIO_DEG[j]) for j in members], axis=0)
            logits.append(w * cos(vec(AUDIO_DEG[i]), centroid) + b)
        losses.append(ce(logits, classes.index(yi)))
    return sum(losses) / len(losses)


def apfc_ref(w: float, b: float) -> float:
    losses = [
        ce([w * math.cos(math.radians(a - p)) + b for p in PROXY_DEG], y)
        for a, y in zip(AUDIO_DEG, LABELS, strict=True)
    ]
    return sum(losses) / len(losses)


@pytest.mark.parametrize(("w", "b"), [(10.0, -5.0), (3.0, 1.0)])
def test_ap_closed_form(unit, w: float, b: float) -> None:
    loss = AngularPrototypicalLoss(init_w=w, init_b=b)(
        unit(AUDIO_DEG, [1, 2, 3, 1, 2, 3]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(ap_ref(w, b), rel=1e-5)


@pytest.mark.parametrize(("w", "b"), [(10.0, -5.0), (3.0, 1.0)])
def test_apfc_closed_form_uses_every_proxy(unit, w: float, b: float) -> None:
    loss = AngularPrototypicalFCLoss(init_w=w, init_b=b)(
        unit(AUDIO_DEG, [1, 2, 3, 1, 2, 3]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(apfc_ref(w, b), rel=1e-5)


@pytest.mark.parametrize("cls", [AngularPrototypicalLoss, AngularPrototypicalFCLoss])
def test_w_changes_after_one_step_and_b_cancels(unit, cls) -> None:
    """w is learnt; b shifts every logit equally, so softmax CE gives it exactly zero gradient."""
    loss_fn = cls()
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    w0, b0 = loss_fn.w.item(), loss_fn.b.item()
    loss_fn(unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)).backward()
    opt.step()
    assert loss_fn.w.item() != w0
    assert abs(loss_fn.b.grad.item()) < 1e-6 and loss_fn.b.item() == pytest.approx(b0, abs=1e-6)


@pytest.mark.parametrize(
    ("cls", "labels", "proxy_deg"),
    [
        (AngularPrototypicalLoss, [1, 1, 1], PROXY_DEG),  # one class
        (AngularPrototypicalLoss, [0, 1, 2], PROXY_DEG),  # no class with two clips
        (AngularPrototypicalFCLoss, [0, 0, 0], [10.0]),  # one proxy
    ],
)
def test_degenerate(unit, cls, labels: list[int], proxy_deg: list[float]) -> None:
    loss_fn = cls()
    audio = unit([0.0, 30.0, 60.0]).requires_grad_(True)
    loss = loss_fn(audio, unit(proxy_deg), torch.tensor(labels))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None and loss_fn.w.grad is not None


def test_apfc_single_class_batch_is_fine_with_several_proxies(unit) -> None:
    loss_fn = AngularPrototypicalFCLoss()
    assert loss_fn(unit([0.0, 10.0]), unit([0.0, 90.0]), torch.tensor([0, 0])).item() > 0
    assert loss_fn.degenerate_batches == 0

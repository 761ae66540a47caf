"""Triplet and multi-view triplet: closed-form values on 2-D angle cases, mining, degenerate batches."""

from __future__ import annotations

import math

import pytest
import torch

from openkws.training.losses import MultiViewTripletLoss, TripletLoss

AUDIO_DEG = [0.0, 50.0, 80.0, 120.0, 200.0]
LABELS = [0, 0, 1, 1, 2]
PROXY_DEG = [20.0, 100.0, 220.0]
M = 0.4


def cos(u: float, v: float) -> float:
    return math.cos(math.radians(u - v))


def hinge(x: float) -> float:
    return max(0.0, x)


def triplet_ref(mining: str) -> float:
    terms: list[float] = []
    n = len(LABELS)
    for a in range(n):
        pos = [p for p in range(n) if p != a and LABELS[p] == LABELS[a]]
        neg = [k for k in range(n) if LABELS[k] != LABELS[a]]
        if not pos or not neg:
            continue
        if mining == "all":
            terms += [
                hinge(M + cos(AUDIO_DEG[a], AUDIO_DEG[k]) - cos(AUDIO_DEG[a], AUDIO_DEG[p]))
                for p in pos
                for k in neg
            ]
        else:
            hp = min(cos(AUDIO_DEG[a], AUDIO_DEG[p]) for p in pos)
            hn = max(cos(AUDIO_DEG[a], AUDIO_DEG[k]) for k in neg)
            terms.append(hinge(M + hn - hp))
    return sum(terms) / len(terms)


def mv_ref(mining: str) -> float:
    n = len(LABELS)
    t = [PROXY_DEG[c] for c in LABELS]
    audio_terms: list[float] = []
    text_terms: list[float] = []
    for i in range(n):
        neg = [k for k in range(n) if LABELS[k] != LABELS[i]]
        pos = [j for j in range(n) if LABELS[j] == LABELS[i]]
        if mining == "all":
            audio_terms += [hinge(M + cos(AUDIO_DEG[i], t[k]) - cos(AUDIO_DEG[i], t[i])) for k in neg]
            text_terms += [
                hinge(M + cos(t[i], AUDIO_DEG[k]) - cos(t[i], AUDIO_DEG[j])) for j in pos for k in neg
            ]
        else:
            audio_terms.append(hinge(M + max(cos(AUDIO_DEG[i], t[k]) for k in neg) - cos(AUDIO_DEG[i], t[i])))
            hp = min(cos(t[i], AUDIO_DEG[j]) for j in pos)
            text_terms.append(hinge(M + max(cos(t[i], AUDIO_DEG[k]) for k in neg) - hp))
    return sum(audio_terms) / len(audio_terms) + sum(text_terms) / len(text_terms)


@pytest.mark.parametrize("mining", ["all", "hardest"])
def test_triplet_closed_form(unit, mining: str) -> None:
    loss = TripletLoss(margin=M, mining=mining)(
        unit(AUDIO_DEG, [1, 2, 3, 4, 5]), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(triplet_ref(mining), rel=1e-5)
    assert loss.item() > 0


@pytest.mark.parametrize("mining", ["all", "hardest"])
def test_multiview_triplet_closed_form(unit, mining: str) -> None:
    loss = MultiViewTripletLoss(margin=M, mining=mining)(
        unit(AUDIO_DEG), unit(PROXY_DEG), torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(mv_ref(mining), rel=1e-5)
    assert loss.item() > 0


def test_triplet_ignores_proxies(unit) -> None:
    args = (unit(AUDIO_DEG), torch.tensor(LABELS))
    a = TripletLoss()(args[0], unit(PROXY_DEG), args[1])
    b = TripletLoss()(args[0], unit([5.0, 6.0, 7.0]), args[1])
    assert a.item() == b.item()


def test_triplet_degenerate_without_positive_pairs(unit) -> None:
    loss_fn = TripletLoss()
    audio = unit([0.0, 90.0, 180.0]).requires_grad_(True)
    loss = loss_fn(audio, unit([0.0, 90.0, 180.0]), torch.tensor([0, 1, 2]))  # every class has one clip
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None


def test_multiview_degenerate_single_class(unit) -> None:
    loss_fn = MultiViewTripletLoss()
    loss = loss_fn(unit([0.0, 10.0]), unit([0.0]), torch.tensor([0, 0]))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1


def test_bad_mining_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="mining"):
        TripletLoss(mining="semi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        MultiViewTripletLoss()(torch.zeros(0, 2), torch.zeros(2, 2), torch.zeros(0, dtype=torch.long))

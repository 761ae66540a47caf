"""Background-negative loss: closed-form values, masking, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from openkws.training.losses import BackgroundNegativeLoss
from openkws.training.losses.background import length_margins


def test_else_matches_closed_form() -> None:
    # cosines 0.8 and 0.3 against the two proxies; margin 0.5, beta 10
    bg = torch.tensor([[0.8, 0.6]])
    proxies = torch.tensor([[1.0, 0.0], [0.3, math.sqrt(1 - 0.09)]])
    s1, s2 = 0.8, 0.8 * 0.3 + 0.6 * math.sqrt(1 - 0.09)
    expected = math.log(1 + math.exp(10 * (s1 - 0.5)) + math.exp(10 * (s2 - 0.5))) / 10
    got = BackgroundNegativeLoss(scale=10.0, margin=0.5)(bg, proxies, torch.ones(1, 2, dtype=torch.bool))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_msp_matches_closed_form_and_mask_drops_pairs() -> None:
    bg = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, True], [True, False]])  # window 2 may contain keyword 2: masked
    loss = BackgroundNegativeLoss(scale=2.0, margin=0.5, pair="msp")(bg, proxies, mask)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    row1 = (sp(2 * (1 - 0.5)) + sp(2 * (0 - 0.5))) / 2
    row2 = sp(2 * (0 - 0.5))
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-5)


def test_windows_far_below_the_margin_cost_almost_nothing() -> None:
    bg = torch.tensor([[1.0, 0.0]])
    far = BackgroundNegativeLoss()(bg, torch.tensor([[-1.0, 0.0]]), torch.ones(1, 1, dtype=torch.bool))
    near = BackgroundNegativeLoss()(bg, torch.tensor([[1.0, 0.1]]), torch.ones(1, 1, dtype=torch.bool))
    assert far.item() < 1e-20 and near.item() > 0.4


def test_gradient_pushes_the_window_away_from_the_proxy() -> None:
    bg = nn.Parameter(torch.tensor([[1.0, 0.2]]))
    proxies = torch.tensor([[1.0, 0.0]])
    loss = BackgroundNegativeLoss(scale=10.0)
    before = torch.cosine_similarity(bg, proxies).item()
    opt = torch.optim.SGD([bg], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        loss(bg, proxies, torch.ones(1, 1, dtype=torch.bool)).backward()
        opt.step()
    assert torch.cosine_similarity(bg, proxies).item() < before - 0.2


def test_all_masked_is_degenerate_not_an_error() -> None:
    loss = BackgroundNegativeLoss()
    bg = torch.ones(2, 3, requires_grad=True)
    out = loss(bg, torch.ones(4, 3), torch.zeros(2, 4, dtype=torch.bool))
    out.backward()
    assert out.item() == 0.0 and loss.degenerate_batches == 1


def test_bad_inputs_raise() -> None:
    loss = BackgroundNegativeLoss()
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        loss(torch.ones(2, 3), torch.ones(4, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="embedding dimension"):
        loss(torch.ones(2, 3), torch.ones(4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="scale must be positive"):
        BackgroundNegativeLoss(scale=0.0)
    with pytest.raises(ValueError, match="pair function"):
        BackgroundNegativeLoss(pair="lse")  # type: ignore[arg-type]


def test_per_proxy_margins_match_closed_form() -> None:
    # one window at cosine 0.6 to both proxies; proxy 1 keeps the margin 0.5, proxy 2 (short) 0.65
    bg = torch.tensor([[0.6, 0.8]])
    proxies = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s1, s2 = 0.6, 1.0
    margins = torch.tensor([0.5, 0.65])
    expected = math.log(1 + math.exp(10 * (s1 - 0.5)) + math.exp(10 * (s2 - 0.65))) / 10
    got = BackgroundNegativeLoss(scale=10.0)(bg, proxies, torch.ones(1, 2, dtype=torch.bool), margins)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_short_keywords_get_the_larger_margin() -> None:
    m = length_margins(torch.tensor([1, 2, 5, 6, 20]), margin=0.5, bonus=0.2, short_phones=6)
    assert m.tolist() == pytest.approx([0.7, 0.66, 0.54, 0.5, 0.5])
    assert torch.all(m[:-1] >= m[1:])  # never larger for a longer keyword


def test_bad_margins_are_refused() -> None:
    loss = BackgroundNegativeLoss()
    with pytest.raises(ValueError, match="margins must have shape"):
        loss(torch.ones(1, 2), torch.ones(3, 2), torch.ones(1, 3, dtype=torch.bool), torch.ones(2))
    with pytest.raises(ValueError, match="short_phones"):
        length_margins(torch.tensor([1]), 0.5, 0.1, short_phones=1)

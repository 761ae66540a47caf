"""Pair functions, input checks and degenerate-batch accounting (training/losses/base.py)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from openkws.training.losses.base import (
    MetricLoss,
    check_embeddings,
    check_labels,
    check_proxy_inputs,
    cosine_matrix,
    else_,
    lse,
    msp,
)

Z = torch.tensor([[0.3, -1.2, 0.8], [2.0, 0.1, -0.4]], dtype=torch.float64)
MASK = torch.tensor([[True, False, True], [False, False, False]])


def test_msp_matches_numpy_and_is_zero_for_empty_sets() -> None:
    out = msp(Z, MASK, 2.0)
    expected_row0 = np.mean([np.log1p(np.exp(2 * 0.3)), np.log1p(np.exp(2 * 0.8))])
    assert out.tolist() == pytest.approx([expected_row0, 0.0])


def test_else_matches_numpy_and_is_zero_for_empty_sets() -> None:
    z = Z.clone().requires_grad_(True)
    out = else_(z, MASK, 3.0)
    expected_row0 = np.log(1 + np.exp(3 * 0.3) + np.exp(3 * 0.8)) / 3
    assert out.tolist() == pytest.approx([expected_row0, 0.0])
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[1].abs().sum() == 0 and z.grad[0, 1] == 0


def test_lse_matches_numpy_and_skips_empty_sets_without_nan() -> None:
    z = Z.clone().requires_grad_(True)
    out = lse(z, MASK, 1.5)
    assert out.tolist() == pytest.approx([np.log(np.exp(1.5 * 0.3) + np.exp(1.5 * 0.8)), 0.0])
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_per_anchor_scales_broadcast() -> None:
    scale = torch.tensor([[2.0], [1.0]], dtype=torch.float64)
    mask = torch.ones_like(MASK)
    out = else_(Z, mask, scale)
    assert out[0].item() == pytest.approx(np.log(1 + np.exp(2 * Z[0].numpy()).sum()) / 2)
    assert out[1].item() == pytest.approx(np.log(1 + np.exp(Z[1].numpy()).sum()))


def test_cosine_matrix_from_angles(unit) -> None:
    s = cosine_matrix(unit([0, 90], [2.0, 0.5]), unit([60], [3.0]))
    assert s.squeeze(1).tolist() == pytest.approx(
        [math.cos(math.radians(60)), math.cos(math.radians(30))], abs=1e-6
    )


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(0, 4), "empty batch"),
        (torch.zeros(3), "shape"),
        (torch.zeros(3, 4, dtype=torch.long), "floating"),
        (torch.zeros(3, 0), "dimension 0"),
    ],
)
def test_check_embeddings_rejects(x: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_embeddings(x, "audio_emb")


def test_check_labels_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        check_labels(torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="integer"):
        check_labels(torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        check_labels(torch.tensor([0, 1, 2]), 3, num_classes=2)


def test_check_proxy_inputs_dimension_mismatch() -> None:
    with pytest.raises(ValueError, match="embedding dimension 4"):
        check_proxy_inputs(torch.randn(3, 4), torch.randn(2, 5), torch.tensor([0, 1, 1]))


def test_degenerate_counts_logs_and_stays_connected(caplog: pytest.LogCaptureFixture) -> None:
    class WithParam(MetricLoss):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.ones(2))

    loss_fn = WithParam()
    x = torch.randn(3, 2, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger="openkws.training.losses"):
        zero = loss_fn._degenerate("testing", x)
        loss_fn._degenerate("testing", x)
    assert loss_fn.degenerate_batches == 2
    assert "degenerate batch (testing)" in caplog.text
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()
    assert x.grad is not None and x.grad.abs().sum() == 0
    assert loss_fn.p.grad is not None and loss_fn.p.grad.abs().sum() == 0


@pytest.mark.parametrize("fn", [msp, else_, lse])
def test_pair_function_gradients_match_finite_differences(fn) -> None:
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True, True, False, False]])
    scale = torch.tensor([[2.0], [3.0], [0.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, mask, scale), (z,))

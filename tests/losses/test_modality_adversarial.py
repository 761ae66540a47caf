"""Gradient reversal and modality adversarial loss: sign flip, closed form, the two players."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from openkws.training.losses import GradientReversal, ModalityAdversarialLoss, grad_reverse


@pytest.mark.parametrize("lam", [1.0, 0.1, 2.5])
def test_grad_reverse_flips_and_scales_the_gradient(lam: float) -> None:
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    y = grad_reverse(x, lam)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -lam * w)


def test_gradient_reversal_module_lambda_is_settable() -> None:
    grl = GradientReversal(1.0)
    grl.lambda_ = 0.5
    x = torch.ones(2, requires_grad=True)
    grl(x).sum().backward()
    assert x.grad.tolist() == [-0.5, -0.5]


def _hand_set(mal: ModalityAdversarialLoss) -> None:
    """Classifier logit = relu(x0) - relu(x1): +1 for (1, 0) (audio side), -1 for (0, 1) (text side)."""
    first, last = mal.classifier[0], mal.classifier[2]
    with torch.no_grad():
        first.weight.copy_(torch.eye(2))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0, -1.0]]))
        last.bias.zero_()


def test_closed_form_and_accuracy(unit) -> None:
    mal = ModalityAdversarialLoss(dim=2, hidden=2)
    _hand_set(mal)
    audio = unit([0.0, 0.0, 45.0], [2.0, 1.0, 1.0])  # logits 1, 1, 0
    text = unit([90.0, 0.0])  # logits -1, +1
    loss = mal(audio, text)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    audio_bce = (sp(-1.0) + sp(-1.0) + sp(0.0)) / 3  # target 1: BCE = softplus(-logit)
    text_bce = (sp(-1.0) + sp(1.0)) / 2  # target 0: BCE = softplus(logit)
    assert loss.item() == pytest.approx(0.5 * audio_bce + 0.5 * text_bce, rel=1e-6)
    # audio: 2 of 3 correct (logit 0 counts as "text"); text: 1 of 2 correct
    assert mal.last_accuracy == pytest.approx(0.5 * 2 / 3 + 0.5 * 1 / 2)


def test_embedding_gradient_is_reversed_and_scaled(unit) -> None:
    torch.manual_seed(1)
    mal = ModalityAdversarialLoss(dim=2, hidden=8, grl_lambda=0.3)
    audio = unit([10.0, 70.0]).requires_grad_(True)
    text = unit([100.0, 200.0, 300.0]).requires_grad_(True)
    mal(audio, text).backward()
    # the same BCE without the GRL, by hand
    a2 = audio.detach().clone().requires_grad_(True)
    t2 = text.detach().clone().requires_grad_(True)
    la = mal.classifier(F.normalize(a2, dim=1)).squeeze(1)
    lt = mal.classifier(F.normalize(t2, dim=1)).squeeze(1)
    plain = 0.5 * F.softplus(-la).mean() + 0.5 * F.softplus(lt).mean()
    plain.backward()
    assert torch.allclose(audio.grad, -0.3 * a2.grad, atol=1e-7)
    assert torch.allclose(text.grad, -0.3 * t2.grad, atol=1e-7)


def test_classifier_parameters_change_after_one_step() -> None:
    mal = ModalityAdversarialLoss(dim=4)
    before = [p.detach().clone() for p in mal.parameters()]
    opt = torch.optim.SGD(mal.parameters(), lr=0.1)
    mal(torch.randn(6, 4), torch.randn(5, 4) + 1.0).backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, mal.parameters(), strict=True))


def test_classifier_learns_while_encoders_confuse_it() -> None:
    """Classifier steps lower the BCE on fixed embeddings; embedding steps through the GRL raise it."""
    audio = torch.randn(16, 4) + torch.tensor([2.0, 0.0, 0.0, 0.0])
    text = torch.randn(16, 4) - torch.tensor([2.0, 0.0, 0.0, 0.0])
    mal = ModalityAdversarialLoss(dim=4, hidden=16)
    opt = torch.optim.SGD(mal.parameters(), lr=0.5)
    first = mal(audio, text).item()
    for _ in range(20):
        opt.zero_grad()
        mal(audio, text).backward()
        opt.step()
    trained = mal(audio, text).item()
    assert trained < first
    emb_a, emb_t = audio.clone().requires_grad_(True), text.clone().requires_grad_(True)
    opt_emb = torch.optim.SGD([emb_a, emb_t], lr=0.5)
    for _ in range(20):
        opt_emb.zero_grad()
        mal(emb_a, emb_t).backward()  # classifier frozen (not stepped); embeddings descend through the GRL
        opt_emb.step()
    assert mal(emb_a, emb_t).item() > trained


def test_missing_modality_and_bad_dim_raise() -> None:
    mal = ModalityAdversarialLoss(dim=4)
    with pytest.raises(ValueError, match="empty batch"):
        mal(torch.zeros(0, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="empty batch"):
        mal(torch.randn(2, 4), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="dimension 4"):
        mal(torch.randn(2, 3), torch.randn(2, 3))

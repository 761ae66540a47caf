"""Registry lookup, and properties every registered loss must have: it trains a toy problem,
rejects an empty batch, and its learnable parameters reach the optimizer."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from openkws.training.losses import LOSSES, PROXY_FAMILY, MetricLoss, build_loss

EXPECTED = {
    "asyp", "proxy_nca", "proxy_bd", "proxy_ms", "triplet", "mv_triplet", "adams",
    "rpl", "mal", "sphereface2", "add", "ap", "apfc",
}  # fmt: skip
D, C, M = 4, 3, 2  # toy problem: 3 classes x 2 clips in 4-D
LABELS = torch.arange(C).repeat_interleave(M)

KWARGS: dict[str, dict[str, object]] = {
    "adams": {"num_classes": C},
    "mal": {"dim": D, "hidden": 16},
    "sphereface2": {"dim": D, "num_classes": C},
    "rpl": {"variant": "distance"},
}


def call(name: str, loss: nn.Module, audio: Tensor, proxies: Tensor, labels: Tensor) -> Tensor:
    """Each signature family, on the same toy tensors."""
    if name in PROXY_FAMILY:
        return loss(audio, proxies, labels)
    if name == "rpl":
        return loss(audio, proxies[labels], labels)
    if name == "mal":
        return loss(audio, proxies)
    return loss(audio, labels)  # sphereface2, add


def test_registry_names_and_classes() -> None:
    assert set(LOSSES) == EXPECTED
    assert set(LOSSES) >= PROXY_FAMILY
    for name, cls in LOSSES.items():
        assert issubclass(cls, MetricLoss), name
        assert isinstance(build_loss(name, **KWARGS.get(name, {})), cls)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown loss 'asymetric'") as err:
        build_loss("asymetric")
    for name in EXPECTED:
        assert name in str(err.value)


def test_kwargs_are_passed() -> None:
    assert build_loss("proxy_nca", scale=8.0).alpha == 8.0
    assert build_loss("rpl", variant="angle").variant == "angle"


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"mal"}))
def test_loss_decreases_under_sgd(name: str) -> None:
    torch.manual_seed(3)
    audio = nn.Parameter(torch.randn(C * M, D))
    proxies = nn.Parameter(torch.randn(C, D))
    loss_fn = build_loss(name, **KWARGS.get(name, {}))
    opt = torch.optim.SGD([audio, proxies, *loss_fn.parameters()], lr=0.05)
    values = []
    for _ in range(15):
        opt.zero_grad()
        loss = call(name, loss_fn, audio, proxies, LABELS)
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[-1] < values[0], values


def _learnable(name: str) -> bool:
    return any(True for _ in build_loss(name, **KWARGS.get(name, {})).parameters())


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if _learnable(n)])
def test_learnable_parameters_receive_gradients_and_move(name: str) -> None:
    """Parameters live in the loss module; one optimizer step moves every one that has a gradient
    (AP/AP-FC's offset ``b`` cancels in the softmax and is checked in their own tests)."""
    torch.manual_seed(5)
    loss_fn = build_loss(name, **KWARGS.get(name, {}))
    before = {n: p.detach().clone() for n, p in loss_fn.named_parameters()}
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    audio = torch.randn(C * M, D) * 0.3 + torch.randn(1, D)  # similar clips: hard pairs, big gradients
    call(name, loss_fn, audio, audio[::M] + 0.1 * torch.randn(C, D), LABELS).backward()
    opt.step()
    for n, p in loss_fn.named_parameters():
        if name in ("ap", "apfc") and n == "b":
            continue
        assert not torch.equal(p.detach(), before[n]), f"{name}.{n} did not change"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_empty_batch_raises(name: str) -> None:
    loss_fn = build_loss(name, **KWARGS.get(name, {}))
    empty = torch.zeros(0, D)
    with pytest.raises(ValueError, match="empty batch"):
        call(name, loss_fn, empty, torch.randn(C, D), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(
    "name", sorted(EXPECTED - {"mal", "sphereface2"})
)  # single-class batches are valid for those two
def test_single_class_batch_is_counted_not_silent(name: str) -> None:
    loss_fn = build_loss(name, **KWARGS.get(name, {}))
    labels = torch.zeros(4, dtype=torch.long)
    audio = torch.randn(4, D, requires_grad=True)
    proxies = torch.randn(1, D, requires_grad=True)
    loss = call(name, loss_fn, audio, proxies, labels)
    assert loss.item() == 0.0
    assert loss_fn.degenerate_batches == 1
    loss.backward()  # stays connected to the graph
    assert audio.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cuda_matches_cpu(name: str) -> None:
    torch.manual_seed(7)
    loss_cpu = build_loss(name, **KWARGS.get(name, {}))
    loss_gpu = build_loss(name, **KWARGS.get(name, {}))
    loss_gpu.load_state_dict(loss_cpu.state_dict())
    loss_gpu.cuda()
    audio, proxies = torch.randn(C * M, D), torch.randn(C, D)
    expected = call(name, loss_cpu, audio, proxies, LABELS)
    got = call(name, loss_gpu, audio.cuda(), proxies.cuda(), LABELS.cuda())
    assert got.device.type == "cuda"
    assert got.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)

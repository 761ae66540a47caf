"""Relational Proxy Loss: distance-, angle- and prototype-wise relations against numpy references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from openkws.training.losses import RelationalProxyLoss

AUDIO_DEG = [0.0, 30.0, 100.0, 140.0, 250.0]
LABELS = [0, 0, 1, 1, 2]
PROXY_DEG = [15.0, 110.0, 230.0]


def vec(deg: list[float]) -> np.ndarray:
    r = np.radians(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(r), np.sin(r)], axis=1)


def huber(x: np.ndarray, delta: float) -> float:
    a = np.abs(x)
    return float(np.mean(np.where(a < delta, 0.5 * x**2, delta * (a - 0.5 * delta))))


def distance_ref(delta: float) -> float:
    a, t = vec(AUDIO_DEG), vec([PROXY_DEG[c] for c in LABELS])
    pairs = [(i, j) for i in range(len(LABELS)) for j in range(len(LABELS)) if i != j]
    da = np.array([np.linalg.norm(a[i] - a[j]) for i, j in pairs])
    dt = np.array([np.linalg.norm(t[i] - t[j]) for i, j in pairs])
    return huber(da / da.mean() - dt / dt.mean(), delta)


def angle_ref(delta: float) -> float:
    a, t = vec(AUDIO_DEG), vec([PROXY_DEG[c] for c in LABELS])
    diffs = []
    for i, j, k in itertools.permutations(range(len(LABELS)), 3):
        if LABELS[i] == LABELS[j] or LABELS[k] == LABELS[j]:
            continue  # the text angle is undefined when t_i = t_j or t_k = t_j

        def angle(x: np.ndarray, i: int = i, j: int = j, k: int = k) -> float:
            e1, e2 = x[i] - x[j], x[k] - x[j]
            return float(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2))

        diffs.append(angle(a) - angle(t))
    return huber(np.array(diffs), delta)


def prototype_ref(delta: float) -> float:
    a, t = vec(AUDIO_DEG), vec([PROXY_DEG[c] for c in LABELS])
    classes = sorted(set(LABELS))
    lab = np.array(LABELS)

    def psi(x: np.ndarray) -> np.ndarray:
        centroids = np.stack([x[lab == c].mean(axis=0) for c in classes])
        d = np.linalg.norm(x[:, None, :] - centroids[None, :, :], axis=2)
        return d / d.mean()

    return huber(psi(a) - psi(t), delta)


@pytest.mark.parametrize(
    ("variant", "ref"), [("distance", distance_ref), ("angle", angle_ref), ("prototype", prototype_ref)]
)
@pytest.mark.parametrize("delta", [1.0, 0.05])
def test_closed_form(unit, variant: str, ref, delta: float) -> None:
    text = unit([PROXY_DEG[c] for c in LABELS], [2.0, 2.0, 0.5, 0.5, 3.0])
    loss = RelationalProxyLoss(variant, delta=delta)(
        unit(AUDIO_DEG, [1, 3, 2, 1, 4]), text, torch.tensor(LABELS)
    )
    assert loss.item() == pytest.approx(ref(delta), rel=1e-4)
    assert loss.item() > 0


@pytest.mark.parametrize("variant", ["distance", "angle", "prototype"])
def test_gradients_are_finite_with_shared_text_rows(unit, variant: str) -> None:
    audio = unit(AUDIO_DEG).requires_grad_(True)
    text = unit([PROXY_DEG[c] for c in LABELS]).requires_grad_(True)
    RelationalProxyLoss(variant)(audio, text, torch.tensor(LABELS)).backward()
    assert torch.isfinite(audio.grad).all() and torch.isfinite(text.grad).all()
    assert audio.grad.abs().sum() > 0


def test_detach_text(unit) -> None:
    audio = unit(AUDIO_DEG).requires_grad_(True)
    text = unit([PROXY_DEG[c] for c in LABELS]).requires_grad_(True)
    RelationalProxyLoss("distance", detach_text=True)(audio, text, torch.tensor(LABELS)).backward()
    assert text.grad is None and audio.grad is not None


@pytest.mark.parametrize(
    ("variant", "labels"), [("distance", [3, 3]), ("prototype", [0, 0]), ("angle", [0, 1])]
)
def test_degenerate(unit, variant: str, labels: list[int]) -> None:
    loss_fn = RelationalProxyLoss(variant)
    audio = unit([0.0, 40.0]).requires_grad_(True)
    loss = loss_fn(audio, unit([10.0, 50.0]), torch.tensor(labels))
    assert loss.item() == 0.0 and loss_fn.degenerate_batches == 1
    loss.backward()
    assert audio.grad is not None


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="variant"):
        RelationalProxyLoss("cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one row per clip"):
        RelationalProxyLoss()(torch.randn(3, 2), torch.randn(2, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="empty batch"):
        RelationalProxyLoss()(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))

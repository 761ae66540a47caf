"""Fixtures for the loss tests: one thread, a fixed seed, and 2-D embeddings built from angles."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import pytest
import torch

Unit = Callable[..., torch.Tensor]


@pytest.fixture(autouse=True)
def _light_torch() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _unit(degrees: Sequence[float], radii: Sequence[float] | None = None) -> torch.Tensor:
    """Rows ``r_i (cos d_i, sin d_i)`` as float32 ``[N, 2]`` (radii default to 1)."""
    radii = radii if radii is not None else [1.0] * len(degrees)
    rows = [
        [r * math.cos(math.radians(d)), r * math.sin(math.radians(d))]
        for d, r in zip(degrees, radii, strict=True)
    ]
    return torch.tensor(rows, dtype=torch.float32)


@pytest.fixture
def unit() -> Unit:
    return _unit


def _cos_deg(u: float, v: float) -> float:
    return math.cos(math.radians(u - v))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _pair_term(fn: str, zs: list[float], scale: float) -> float:
    """Independent loop form of seed 002's MSP (Eq. 4), ELSE (Eq. 6-7) and LSE over one anchor's set."""
    if not zs:
        return 0.0
    if fn == "msp":
        return sum(_softplus(scale * z) for z in zs) / len(zs)
    if fn == "else":
        return math.log(1.0 + sum(math.exp(scale * z) for z in zs)) / scale
    if fn == "lse":
        return math.log(sum(math.exp(scale * z) for z in zs))
    raise ValueError(fn)


def proxy_reference(
    audio_deg: Sequence[float],
    proxy_deg: Sequence[float],
    labels: Sequence[int],
    pos_fn: str,
    neg_fn: str,
    pos_sim: str,
    neg_sim: str,
    alpha: float,
    beta: float,
    lam: float,
) -> float:
    """Seed 002 Eq. 10 on 2-D unit vectors given by angles, written as loops over anchors.

    Type P/N: S_ij = cos(a_i, t_j); type A: S_ij = cos(t_i, a_j); t_i = proxy of clip i's class.
    """
    n = len(labels)
    t_deg = [proxy_deg[c] for c in labels]

    def s(kind: str, i: int, j: int) -> float:
        return _cos_deg(audio_deg[i], t_deg[j]) if kind == "pn" else _cos_deg(t_deg[i], audio_deg[j])

    total = 0.0
    for i in range(n):
        pos = [lam - s(pos_sim, i, j) for j in range(n) if labels[j] == labels[i]]
        neg = [s(neg_sim, i, k) - lam for k in range(n) if labels[k] != labels[i]]
        total += _pair_term(pos_fn, pos, alpha) + _pair_term(neg_fn, neg, beta)
    return total


@pytest.fixture
def proxy_ref() -> Callable[..., float]:
    return proxy_reference

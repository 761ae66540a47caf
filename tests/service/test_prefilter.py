"""openkws.engine.prefilter: the int8 prefilter reports exactly the pairs the fp32 product does, even
for scores a hair either side of their threshold."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.engine.prefilter import ThresholdScorer


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_prefilter_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prox = unit(rng.standard_normal((5000, 256)))
    q = unit(
        np.concatenate([prox[:40] + 0.3 * rng.standard_normal((40, 256)), rng.standard_normal((200, 256))])
    )
    exact = q @ prox.T
    thr = np.full(5000, 0.65, np.float32)
    # thresholds within 1e-4 of real scores: the quantisation error is far larger, the bound must hold
    edge = rng.integers(0, 5000, 300)
    rows = rng.integers(0, len(q), 300)
    thr[edge] = exact[rows, edge] + rng.choice([-1e-4, 1e-4], 300).astype(np.float32)
    margin = np.where(np.arange(len(q)) % 4 == 0, 0.15, 0.0).astype(np.float32)
    r, k, s = ThresholdScorer(prox, thr, min_keywords=0).hits(q, margin)
    want_r, want_k = np.nonzero(exact >= thr[None, :] - margin[:, None])
    assert len(want_r) > 100
    np.testing.assert_array_equal(r, want_r)
    np.testing.assert_array_equal(k, want_k)
    np.testing.assert_allclose(s, exact[want_r, want_k], atol=1e-5)
    r32, k32, _ = ThresholdScorer(prox, thr).hits(q, margin)  # below MIN_KEYWORDS: the fp32 path
    np.testing.assert_array_equal(r32, want_r)
    np.testing.assert_array_equal(k32, want_k)


def test_no_hits_and_bad_shapes() -> None:
    prox = unit(np.random.default_rng(0).standard_normal((3000, 64)))
    r, k, s = ThresholdScorer(prox, np.full(3000, 2.0, np.float32), min_keywords=0).hits(
        prox[:3], np.zeros(3, np.float32)
    )
    assert len(r) == len(k) == len(s) == 0
    with pytest.raises(ValueError, match="thresholds \\[K\\] expected"):
        ThresholdScorer(prox, np.zeros(5, np.float32))

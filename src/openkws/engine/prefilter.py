"""Which keywords does each window embedding score at or above its threshold? Exactly, but cheaply.

The plain way is one fp32 product of the windows [n, D] with every keyword proxy [K, D], a threshold
mask and ``np.nonzero``. With 10,000 keywords that product costs about a third of a stream's CPU. Here
it is done in two stages, with the same answer:

1. an int8 product (onnxruntime ``MatMulInteger``: u8 x s8, which uses the CPU's VNNI dot products,
   ~4x the fp32 rate): windows quantised per row, proxies with one scale for all keywords;
2. a rigorous bound on the quantisation error of every score (from the two scales and the L1 norms)
   keeps every pair whose approximate score could reach its threshold, and only those pairs are
   rescored exactly in fp32. A pair under its threshold in fp32 is never reported; a pair at or above
   it is never missed.

Rows whose best score cannot reach the lowest threshold (most windows) are dropped after one pass
(row maximum); only the others get the per-keyword mask and ``np.nonzero``, which on a full
[256, 10000] array costs more than the product's int8 stage. Below ``min_keywords`` keywords the fp32 product is already cheap and is used.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> prox = rng.standard_normal((3000, 256)).astype(np.float32)
    >>> prox /= np.linalg.norm(prox, axis=1, keepdims=True)
    >>> thr = np.full(3000, 0.3, np.float32)
    >>> q = prox[[5, 7]] + 0.05 * rng.standard_normal((2, 256)).astype(np.float32)
    >>> q /= np.linalg.norm(q, axis=1, keepdims=True)
    >>> r, k, s = ThresholdScorer(prox, thr, min_keywords=0).hits(q, np.zeros(2, np.float32))
    >>> list(zip(r.tolist(), k.tolist()))
    [(0, 5), (1, 7)]
    >>> bool(np.allclose(s, (q[r] * prox[k]).sum(axis=1)))
    True
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

MIN_KEYWORDS = 2048  # below this the fp32 product is cheap; the int8 stage would not pay
_ZERO = np.array(128, np.uint8)


def _matmul_integer() -> ort.InferenceSession:
    d, k = "d", "k"
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero"], ["y"])],
        "openkws_scores",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", d]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [d, k]),
            helper.make_tensor_value_info("a_zero", TensorProto.UINT8, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the service runs batches on its own worker threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class ThresholdScorer:
    """Exact threshold hits of windows against one immutable keyword set (build once per index swap)."""

    _session: ort.InferenceSession | None = None

    def __init__(self, proxies: np.ndarray, thresholds: np.ndarray, min_keywords: int = MIN_KEYWORDS) -> None:
        self.proxies = np.ascontiguousarray(proxies, np.float32)
        self.thresholds = np.asarray(thresholds, np.float32)
        if self.proxies.ndim != 2 or self.thresholds.shape != (len(self.proxies),):
            raise ValueError(
                f"proxies [K, D] and thresholds [K] expected, got {self.proxies.shape} and "
                f"{self.thresholds.shape}"
            )
        self._thr_min = float(self.thresholds.min()) if len(self.thresholds) else np.inf
        self.int8 = len(self.proxies) >= min_keywords
        if self.int8:
            amax = float(np.abs(self.proxies).max()) or 1.0
            self._sp = amax / 127.0
            q = np.clip(np.rint(self.proxies / self._sp), -127, 127).astype(np.int8)
            self._pq_t = np.ascontiguousarray(q.T)  # [D, K]
            # |P - sp * q| <= sp / 2 per element: the error terms of the bound (see hits)
            self._p_l1_max = float(np.abs(self.proxies).sum(axis=1).max())
            if ThresholdScorer._session is None:
                ThresholdScorer._session = _matmul_integer()

    def hits(self, emb: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, keyword, fp32 score) of every pair with score >= threshold - margin[row]; rows ascending."""
        if not self.int8:
            sims = emb @ self.proxies.T
            rows = np.flatnonzero(sims.max(axis=1, initial=-np.inf) >= self._thr_min - margin)
            r, k = np.nonzero(sims[rows] >= self.thresholds[None, :] - margin[rows][:, None])
            return rows[r], k, sims[rows[r], k]
        emb = np.ascontiguousarray(emb, np.float32)
        sq = np.abs(emb).max(axis=1) / 127.0
        sq[sq == 0] = 1.0
        a = (np.clip(np.rint(emb / sq[:, None]), -127, 127) + 128).astype(np.uint8)
        assert self._session is not None
        y = self._session.run(None, {"a": a, "b": self._pq_t, "a_zero": _ZERO})[0]
        # Q = sq*qa + eq, P = sp*qp + ep with |eq| <= sq/2, |ep| <= sp/2 per element, so
        # |Q.P - sq*sp*qa.qp| <= sp/2*|Q|_1 + sq/2*|P|_1 + D*sq*sp/4: a bound per row, all keywords.
        d = emb.shape[1]
        bound = (
            0.5 * self._sp * np.abs(emb).sum(axis=1) + 0.5 * sq * self._p_l1_max + 0.25 * d * sq * self._sp
        )
        scale = sq * self._sp
        slack = margin + bound
        # most windows match nothing: one pass (row max against the lowest threshold) drops them
        rows = np.flatnonzero(y.max(axis=1) * scale >= self._thr_min - slack)
        if not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        approx = y[rows].astype(np.float32)
        approx *= scale[rows][:, None]
        r, k = np.nonzero(approx >= self.thresholds[None, :] - slack[rows][:, None])
        r = rows[r]
        exact = np.einsum("ij,ij->i", emb[r], self.proxies[k])
        keep = exact >= self.thresholds[k] - margin[r]
        return r[keep], k[keep], exact[keep].astype(np.float32)

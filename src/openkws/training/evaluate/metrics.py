"""Verification metrics (numpy only) over scores (higher = more likely a match) and labels 1 (match)
/ 0 (mismatch); tied scores form one threshold step, as in scikit-learn.

Example:
    >>> s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    >>> y = np.array([1, 1, 0, 1, 0, 0])
    >>> round(roc_auc(s, y), 4)  # 8 of 9 (pos, neg) pairs ordered correctly
    0.8889
    >>> round(average_precision(s, y), 4)  # (1/1 + 2/2 + 3/4) / 3
    0.9167
    >>> round(eer(s, y), 4)
    0.3333
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openkws.training.evaluate.pairs import Pair


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if y.all() or not y.any():
        raise ValueError("need both match (1) and mismatch (0) pairs to compute verification metrics")
    return s, y


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing; starts at (0, 0) with threshold +inf."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.zeros(0, int)
    idx = np.concatenate([distinct, [len(s) - 1]])
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tpr = np.concatenate([[0.0], tps / y.sum()])
    fpr = np.concatenate([[0.0], fps / (~y).sum()])
    thr = np.concatenate([[np.inf], s[idx]])
    return fpr, tpr, thr


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds (no interpolation)."""
    s, y = _check(scores, labels)
    fpr, tpr, _ = roc_curve(s, y)
    n_pos, n_neg = y.sum(), (~y).sum()
    tp, fp = tpr * n_pos, fpr * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 1.0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate: where the false-accept rate equals the false-reject rate (linear interpolation
    on the ROC between the two thresholds that bracket the crossing)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from -1 to +1
    i = int(np.flatnonzero(diff >= 0)[0])
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    # crossing between i-1 and i
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def det_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-accept rate, false-reject rate) per threshold."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return fpr, 1.0 - tpr


def summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER / ROC-AUC / AP (fractions in [0, 1]) and pair counts."""
    y = np.asarray(labels).astype(bool)
    return {
        "eer": eer(scores, labels),
        "auc": roc_auc(scores, labels),
        "ap": average_precision(scores, labels),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
    }


def pair_metrics(scores: np.ndarray, pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """Metrics for positives vs easy negatives and positives vs hard negatives."""
    kinds = np.array([p.kind for p in pairs])
    labels = np.array([p.label for p in pairs])
    out = {}
    for neg in ("easy", "hard"):
        sel = (kinds == "positive") | (kinds == neg)
        if (kinds == neg).any() and (kinds == "positive").any():
            out[neg] = summary(scores[sel], labels[sel])
    return out

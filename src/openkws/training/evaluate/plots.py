"""DET (probit axes) and ROC curves, and score histograms, for pair evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from scipy.special import ndtri

from openkws.training.evaluate.metrics import det_curve, roc_auc, roc_curve
from openkws.training.evaluate.pairs import Pair

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def plot_curves(results: dict[str, tuple[np.ndarray, Sequence[Pair]]], path: Path, title: str = "") -> Path:
    """DET (probit axes) and ROC curves for easy and hard pairs of each system, plus score histograms."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    for name, (scores, pairs) in results.items():
        kinds = np.array([p.kind for p in pairs])
        labels = np.array([p.label for p in pairs])
        for neg, ls in (("easy", "-"), ("hard", "--")):
            sel = (kinds == "positive") | (kinds == neg)
            if not (kinds == neg).any():
                continue
            far, frr = det_curve(scores[sel], labels[sel])
            clip = lambda x: np.clip(x, 1e-4, 1 - 1e-4)  # noqa: E731
            axes[0].plot(ndtri(clip(far)), ndtri(clip(frr)), ls, label=f"{name} {neg}")
            fpr, tpr, _ = roc_curve(scores[sel], labels[sel])
            axes[1].plot(fpr, tpr, ls, label=f"{name} {neg} (AUC {roc_auc(scores[sel], labels[sel]):.3f})")
    name0 = next(iter(results))
    scores, pairs = results[name0]
    for kind in ("positive", "easy", "hard"):
        s = np.array([sc for sc, p in zip(scores, pairs, strict=True) if p.kind == kind])
        if len(s):
            axes[2].hist(s, bins=40, alpha=0.5, label=kind, density=True)
    axes[0].set_xticks(ndtri(ticks), [f"{t:g}" for t in ticks])
    axes[0].set_yticks(ndtri(ticks), [f"{t:g}" for t in ticks])
    axes[0].set_xlim(ndtri(5e-4), ndtri(0.8))
    axes[0].set_ylim(ndtri(5e-4), ndtri(0.8))
    axes[0].set(xlabel="false accept rate", ylabel="false reject rate", title="DET")
    axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes[2].set(xlabel="score", title=f"score histogram ({name0})")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The ``openkws eval pairs`` pipeline: clips -> pairs -> scores (serving engine, baselines) -> JSON,
CSV and plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from openkws.text import G2P, load_inventory
from openkws.training.evaluate.baselines import TemplateBaselines
from openkws.training.evaluate.engine_scoring import EngineScorer, score_pairs_model
from openkws.training.evaluate.metrics import pair_metrics
from openkws.training.evaluate.pairs import make_pairs, read_eval_manifest
from openkws.training.evaluate.plots import plot_curves


class PairsReport(TypedDict, total=False):
    """The JSON report of ``openkws eval pairs`` (``pairs.json``)."""

    manifest: str
    split: str | None
    clips: int
    pairs: dict[str, int]  # pairs per kind: positive, easy, hard
    systems: dict[str, dict[str, dict[str, float]]]  # system -> easy/hard -> metric -> value
    model: dict[str, object]
    template_voices: list[str]


def evaluate_pairs(
    manifest: Path,
    model_dir: Path | None,
    out_dir: Path | None = None,
    baselines: bool = False,
    max_clips: int | None = None,
    seed: int = 0,
    progress: bool = True,
    split: str | None = None,
    proxies: Sequence[str] = ("text",),
    no_leading_pad: bool = False,
) -> PairsReport:
    """The ``openkws eval pairs`` pipeline; returns (and writes) the JSON report. ``no_leading_pad``:
    also score each openkws system with no silence ahead of the clips (``[no leading pad]``)."""
    clips = read_eval_manifest(manifest, split)
    if not clips:
        raise ValueError(f"no clips in {manifest}" + (f" with split={split}" if split else ""))
    if max_clips is not None and len(clips) > max_clips:
        rng = np.random.default_rng(seed)
        clips = [clips[i] for i in sorted(rng.choice(len(clips), max_clips, replace=False))]
    g2p = G2P()
    texts = [c.text for c in clips]
    inv = load_inventory()
    phonemes = {t: tuple(inv.encode(g2p(t).phones_only)) for t in set(texts)}
    pairs = make_pairs(texts, phonemes, seed)
    systems: dict[str, np.ndarray] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    report: PairsReport = {
        "manifest": str(manifest),
        "split": split,
        "clips": len(clips),
        "pairs": {k: sum(p.kind == k for p in pairs) for k in ("positive", "easy", "hard")},
        "systems": metrics,
    }
    if model_dir is not None:
        scorer = EngineScorer(model_dir)
        for mode in proxies:
            name = f"openkws:{scorer.spec.model_version}" + ("" if mode == "text" else f"[proxy={mode}]")
            systems[name] = score_pairs_model(scorer, clips, pairs, progress, mode)
            if no_leading_pad:
                systems[f"{name}[no leading pad]"] = score_pairs_model(
                    scorer, clips, pairs, progress, mode, False
                )
        report["model"] = {
            "dir": str(model_dir),
            "model_version": scorer.spec.model_version,
            "frontend": scorer.spec.frontend,
            "windows_frames": scorer.spec.windows_frames,
            "window_stride_frames": scorer.spec.window_stride_frames,
            "scored_by": "openkws engine",
        }
    if baselines:
        tb = TemplateBaselines()
        systems.update(tb.score(clips, pairs, progress))
        report["template_voices"] = tb.voices
    for name, scores in systems.items():
        metrics[name] = pair_metrics(scores, pairs)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "pairs.json").write_text(json.dumps(report, indent=2) + "\n")
        with open(out_dir / "scores.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "text", "label", "kind", *systems])
            for k, p in enumerate(pairs):
                w.writerow(
                    [clips[p.clip].path, p.text, p.label, p.kind, *(f"{s[k]:.5f}" for s in systems.values())]
                )
        if systems:
            plot_curves(
                {n: (s, pairs) for n, s in systems.items()}, out_dir / "pairs.png", title=str(manifest)
            )
    return report


def format_report(report: PairsReport) -> str:
    lines = []
    for name, res in report.get("systems", {}).items():
        for neg, m in res.items():
            lines.append(
                f"{name:45s} {neg:5s} EER {100 * m['eer']:6.2f}%  AUC {m['auc']:.4f}  AP {m['ap']:.4f}"
                f"  ({m['n_pos']}+/{m['n_neg']}-)"
            )
    return "\n".join(lines)

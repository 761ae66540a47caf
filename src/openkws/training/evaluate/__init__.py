"""Evaluation, split by concern; every figure of a model comes from the serving engine.

* :mod:`.metrics`: EER / ROC-AUC / AP / DET over scores and labels;
* :mod:`.pairs`: the clip manifest, clip audio and (clip, text) pairs (one builder,
  :func:`openkws.training.data.pairs.build_pairs`);
* :mod:`.engine_scoring`: pair scores through :class:`openkws.engine.spotter.Spotter` (the same
  encoders, window plan and enrollment as the service; no ONNX session of its own);
* :mod:`.baselines`: untrained TTS-template baselines and the template voices;
* :mod:`.plots`: DET / ROC / histograms; :mod:`.report`: the ``openkws eval pairs`` pipeline;
* :mod:`.cost`: per-frame and per-window cost of the encoders.
"""

from __future__ import annotations

from openkws.training.evaluate.baselines import (
    TemplateBaselines,
    dtw_distance,
    synthesize_any,
    template_voices,
)
from openkws.training.evaluate.cost import measure_cost
from openkws.training.evaluate.engine_scoring import EngineScorer, score_pairs_model
from openkws.training.evaluate.metrics import (
    average_precision,
    det_curve,
    eer,
    pair_metrics,
    roc_auc,
    roc_curve,
    summary,
)
from openkws.training.evaluate.pairs import (
    EVAL_PAD_S,
    EvalClip,
    Pair,
    load_eval_audio,
    make_pairs,
    pad_eval,
    read_eval_clip,
    read_eval_manifest,
)
from openkws.training.evaluate.plots import plot_curves
from openkws.training.evaluate.report import evaluate_pairs, format_report

__all__ = [
    "EVAL_PAD_S", "EngineScorer", "EvalClip", "Pair", "TemplateBaselines", "average_precision", "det_curve",
    "dtw_distance", "eer", "evaluate_pairs", "format_report", "load_eval_audio", "make_pairs", "measure_cost",
    "pad_eval", "pair_metrics", "plot_curves", "read_eval_clip", "read_eval_manifest", "roc_auc", "roc_curve",
    "score_pairs_model", "summary", "synthesize_any", "template_voices",
]  # fmt: skip

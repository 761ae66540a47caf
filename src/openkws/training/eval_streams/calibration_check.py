"""How well the model's calibration bank predicts false alarms on the streams' recorded speech.

For each openkws proxy kind and each target rate, every keyword gets the threshold its bank
predicts for that target (:class:`openkws.engine.calibration.Calibrator`, the service's own
calibration), and its false alarms are counted on the recorded-speech negatives only (real voices,
never seen by the bank), outside prompts containing the keyword. Reported: measured FA/h per
keyword (pooled) against the target, and the median over keywords of measured / predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openkws.engine.calibration import Calibrator
from openkws.engine.cohort import phone_count
from openkws.engine.spotter import Spotter
from openkws.training.eval_streams.build import Stream
from openkws.training.eval_streams.engine_adapter import ID_BLOCK, TENANT
from openkws.training.eval_streams.scoring import Scores
from openkws.training.eval_streams.sources import contains_text

CAL_TARGETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
RATIO_TARGET = 10.0  # per-keyword ratios need a few expected events in ~0.2 h of recorded speech


def recorded_hours(streams: Sequence[Stream], texts: Sequence[str]) -> dict[str, float]:
    out = dict.fromkeys(texts, 0.0)
    for st in streams:
        for a, b, kind, text in st.spans:
            if kind != "recorded":
                continue
            for k in texts:
                if not contains_text(text, k):
                    out[k] += (b - a) / 3600.0
    return out


def calibration_report(
    spotter: Spotter,
    model_dir: Path,
    scores: dict[str, Scores],
    streams: Sequence[Stream],
    texts: Sequence[str],
    systems: dict[str, str],
    floor: float | dict[str, float] = 0.0,
) -> dict[str, object] | None:
    """``systems``: ``{system name: proxy kind}`` in enrollment order (see :mod:`.engine_adapter`);
    ``floor``: the enrollment floor, or one per kind."""
    cal = Calibrator.load(
        model_dir, spotter.spec.embedding_dim, spotter.params.refractory_frames, cohort=spotter.cohort
    )
    if cal is None:
        return None
    hours = recorded_hours(streams, texts)
    by_kind: dict[str, object] = {}
    out: dict[str, object] = {
        "bank_hours": cal.hours,
        "recorded_keyword_hours": round(sum(hours.values()), 2),
        "ratio_target": RATIO_TARGET,
        "proxies": by_kind,
    }
    enrolled = spotter.index.tenant(TENANT).entries
    for n, (name, kind) in enumerate(systems.items()):
        sc = scores.get(name)
        if sc is None:
            continue
        entries = {e.text: e for e in enrolled if e.id // ID_BLOCK == n}
        fa = {
            k: np.asarray(
                [
                    s
                    for s, kd in zip(sc.neg.get(k, []), sc.neg_kind.get(k, []), strict=True)
                    if kd == "recorded"
                ]
            )
            for k in texts
        }
        peaks = {k: cal.peaks(entries[k].proxy, phone_count(entries[k].phonemes)) for k in texts}
        rows = []
        for t in CAL_TARGETS:
            thr = {k: peaks[k].threshold(t) for k in texts}
            counts = {k: int((fa[k] >= thr[k]).sum()) for k in texts}
            fl = floor.get(kind, 0.0) if isinstance(floor, dict) else floor
            below = sum(thr[k] < fl for k in texts)
            ratios = [counts[k] / hours[k] / t for k in texts if hours[k] > 0]
            rows.append(
                {
                    "target": t,
                    "measured": sum(counts.values()) / max(sum(hours.values()), 1e-12),
                    "median_ratio": float(np.median(ratios)) if ratios else None,
                    "keywords_below_floor": int(below),
                    "median_threshold": float(np.median(list(thr.values()))),
                }
            )
        by_kind[kind] = rows
    return out

"""Bank-calibrated systems: each openkws proxy kind swept in *sensitivity* instead of raw score.

The service turns a sensitivity (false alarms per hour) into a per-keyword threshold from the model's
calibration bank (:class:`openkws.engine.calibration.Calibrator`). Sweeping one global raw threshold
(the protocol's default, :mod:`.scoring`) is what a user who sets one raw value gets; sweeping one
global sensitivity is what a user of ``sensitivity`` gets. For that, every event's score is replaced
by ``-log10`` of the FA/h its keyword's bank predicts at that score (monotonic per keyword), and the
same sweep runs on those values: system ``<name>@bank``. Whitened proxies (issue 26) put keywords on
different raw scales, so this is the row that shows them as the service would use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from openkws.engine.calibration import Calibrator
from openkws.engine.spotter import Spotter
from openkws.training.eval_streams.engine_adapter import ID_BLOCK, TENANT, Event

MIN_RATE = 1e-6  # FA/h; keeps -log10 finite for keywords with no bank events


def bank_calibrated(
    spotter: Spotter,
    model_dir: Path,
    events: Mapping[str, Mapping[str, list[Event]]],
    systems: Mapping[str, str],
) -> dict[str, dict[str, list[Event]]]:
    """``systems``: ``{system name: proxy kind}`` in enrollment order -> ``{name@bank: {stream: events}}``."""
    cal = Calibrator.load(model_dir, spotter.spec.embedding_dim, spotter.params.refractory_frames)
    if cal is None:
        return {}
    enrolled = spotter.index.tenant(TENANT).entries
    out: dict[str, dict[str, list[Event]]] = {}
    for n, name in enumerate(systems):
        if name not in events:
            continue
        peaks = {e.text: cal.peaks(e.proxy) for e in enrolled if e.id // ID_BLOCK == n}
        out[f"{name}@bank"] = {
            st: [
                replace(e, score=-float(np.log10(max(MIN_RATE, peaks[e.keyword].rate(e.score))))) for e in evs
            ]
            for st, evs in events[name].items()
        }
    return out

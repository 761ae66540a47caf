"""The short soak (CI): a real server, concurrent real-time streams and keyword churn for ~40 s.
Asserts no errors and no lost detections; latency and RSS growth are reported, not asserted
(``python -m bench.soak --minutes 10`` is the benchmark run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.soak import run_soak

MINUTES = float(os.environ.get("OPENKWS_SOAK_MINUTES", "0.6"))


def test_short_soak(model_dir: Path, tmp_path: Path) -> None:
    res = run_soak(model_dir, MINUTES, clients=3, churners=2, churn_rate_per_s=2.0, workdir=tmp_path)
    print("\nsoak:", json.dumps({k: v for k, v in res.items() if k != "error_samples"}))
    assert res["errors"] == 0, res["error_samples"]
    assert res["detections_expected"] > 0, "the calibrated clip keywords should fire"
    assert res["detections_lost"] == 0, res
    assert res["streams_completed"] >= 3 and res["churn_ops"] > 0

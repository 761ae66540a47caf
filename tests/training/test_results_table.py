"""The RESULTS.md table renderer reads eval reports and marks missing ones instead of inventing them."""

import json
from pathlib import Path

from openkws.training.results_table import render


def _report(path: Path, systems: dict) -> None:
    path.mkdir(parents=True)
    (path / "pairs.json").write_text(json.dumps({"systems": systems}))


def _m(eer: float) -> dict:
    return {"eer": eer, "auc": 0.9, "ap": 0.8}


def test_rows_from_reports_and_missing_marked(tmp_path: Path) -> None:
    _report(tmp_path / "asyp-synth", {"openkws:asyp-ep4": {"easy": _m(0.057), "hard": _m(0.237)}})
    _report(tmp_path / "asterisk", {
        "openkws:default-ep10": {"easy": _m(0.082), "hard": _m(0.356)},
        "tts_template_speech_embedding": {"easy": _m(0.041), "hard": _m(0.27)},
    })  # fmt: skip
    rows = {line.split(" | ")[0].strip("| "): line for line in render(tmp_path).splitlines()}
    assert "| 5.7% | 0.900 | 0.800 | 23.7% |" in rows["3"]
    assert rows["3"].endswith("| not run |  |  |  |")  # no Asterisk report for AsyP
    assert "| 4.1% | 0.900 | 27.0% | 0.900 |" in rows["B1"]
    assert "| 8.2% | 0.900 | 35.6% | 0.900 |" in rows["S0"]
    assert "not run" in rows["6"]

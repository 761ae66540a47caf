"""``bench.fast_path``: the issue-24 rule (text@bank and tts-white@bank, pooled, at most 1 point worse
than float), its table, and its argument errors. The runs themselves are `openkws eval streams`
(tests/training/test_eval_streams*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.fast_path import DECIDING, compare, frr, main, table


def _report(text: float, white: float, other: float = 0.2) -> dict[str, Any]:
    def sys_(x: float) -> dict[str, Any]:
        return {"targets": {"0.5": {"frr": x, "by_condition": {"quiet": x - 0.1, "noise": x + 0.1}}}}

    return {
        "conditions": ["quiet", "noise"],
        "systems": {
            "openkws-text@bank": sys_(text),
            "openkws-tts-white@bank": sys_(white),
            "openkws-text": sys_(other),  # raw sweep: reported by eval streams, not by the rule
        },
    }


def test_rule_needs_both_deciding_systems_within_one_point() -> None:
    base = {n: f["all"] for n, f in frr(_report(0.60, 0.45)).items()}
    ok_row = {n: f["all"] for n, f in frr(_report(0.61, 0.40, other=0.9)).items()}
    rows, ok = compare(base, ok_row, DECIDING)
    assert ok and [r["worse_points"] for r in rows] == [1.0, -5.0]  # the raw sweep is not looked at
    bad_row = {n: f["all"] for n, f in frr(_report(0.55, 0.4601)).items()}
    assert compare(base, bad_row, DECIDING)[1] is False  # text better, tts-white 1.01 points worse
    only_text = {"openkws-text@bank": 0.60}
    assert compare(base, only_text, DECIDING)[1] is False  # a missing system never passes


def test_table_has_pooled_and_per_condition_columns() -> None:
    lines = table({"float": _report(0.60, 0.45), "int8": _report(0.615, 0.45)})
    assert lines[0].startswith("| row | system | FRR @ 0.5 FA/h pooled | vs float (points) | quiet | noise |")
    assert "| int8 | openkws-text@bank | 61.5% | +1.5 | 51.5% | 71.5% |" in lines
    assert not any("| openkws-text |" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "float,fp16"], "--rows 'float,fp16': choose from float, int8, float+vad, int8+vad"),
        (["--rows", ","], "choose from"),
        (["--model", "nowhere"], "no model.json in nowhere"),
        (["--int8", "nowhere"], "no model.json in nowhere"),
        (["--calibration", "missing.csv"], "--calibration missing.csv: no such manifest"),
        (["--calibration-clips", "0"], "--calibration-clips must be >= 1"),
    ],
)
def test_bad_arguments_are_clear_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp_path)])
    assert e.value.code == 2 and message in capsys.readouterr().err

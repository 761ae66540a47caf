"""Issue 11's ablation table is rendered from the evaluation outputs, row by row, and a row whose
outputs are missing says "not run" instead of inventing a figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.ablation import BEGIN, END, tables, update_doc


def _row(d: Path) -> Path:
    (d / "synth").mkdir(parents=True)
    (d / "asterisk").mkdir()
    pairs = {"systems": {"openkws:m": {"easy": {"eer": 0.025}, "hard": {"eer": 0.2024}}}}
    (d / "synth" / "pairs.json").write_text(json.dumps(pairs))
    probe = {
        "running_fire_rate": 0.0146,
        "partial_fire_rate": 0.148,
        "keyword_hit_rate_at_1pct_running": 0.809,
    }
    (d / "probe.json").write_text(json.dumps(probe))
    user = {"hits": 25, "keyword_sentences": 60, "false_alarm_sentences": 4, "other_sentences": 120}
    (d / "user_text.json").write_text(json.dumps(user))
    (d / "asterisk" / "length_frr.txt").write_text(
        "m @ 1% easy FAR: <=3 phones: FRR 9.2% (n=65, median 0.74), 4-5 phones: FRR 10.1% (n=89, median 0.74)"
    )
    by = {"frr": 0.869, "by_condition": {"quiet": 0.751}, "by_phones": {"1-3": {"frr": 0.791, "n": 3}}}
    (d / "streams").mkdir()
    (d / "streams" / "streams.json").write_text(
        json.dumps({"systems": {"openkws-text": {"targets": {"0.5": by}}}})
    )
    return d


def test_rows_show_measured_figures_and_missing_ones_as_not_run(tmp_path: Path) -> None:
    md = tables([("S1", "shipped", _row(tmp_path / "a")), ("R", "robust", tmp_path / "empty")])
    s1 = next(line for line in md.splitlines() if line.startswith("| S1 | shipped"))
    assert "2.5% / 20.2%" in s1 and "1.5% / 14.8%" in s1 and "80.9%" in s1 and "25/60, 4/120" in s1
    assert "9.2% (0.74) / 10.1% (0.74)" in s1 and s1.count("not run") == 2  # TTS user test, Asterisk pairs
    assert "| S1 | text | 86.9% | 75.1% | not run |" in md and "| S1 | tts | not run |" in md
    r = next(line for line in md.splitlines() if line.startswith("| R | robust"))
    assert r.count("not run") == 7


def test_doc_block_is_replaced_not_duplicated(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n")
    update_doc(doc, "one\n")
    update_doc(doc, "two\n")
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and "two" in text and "one" not in text and text.endswith(END + "\n")


def test_a_row_without_a_folder_is_refused(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bench.ablation", f"X={tmp_path / 'nope'}"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert r.returncode == 2 and "expected KEY=DIR with an existing folder" in r.stderr

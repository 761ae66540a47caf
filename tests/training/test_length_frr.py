"""FRR by keyword length from a pairs scores.csv: threshold from easy mismatches, per-bucket misses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from openkws.training.length_frr import length_table


def test_length_table_counts_misses_per_bucket(tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "phonemes"])
        w.writerows(
            [["a.wav", "hi", "HH AY"], ["b.wav", "turn on the lights", "T ER N | AA N | DH AH | L AY T S"]]
        )
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "label", "kind", "sys"])
        w.writerows([["x", "hi", 1, "positive", 0.9], ["x", "hi", 1, "positive", 0.2],
                     ["y", "turn on the lights", 1, "positive", 0.8]])  # fmt: skip
        w.writerows([["z", "other", 0, "easy", s / 100] for s in range(50)])  # easy scores 0.00-0.49
    table = length_table(scores, man, far=0.02)["sys"]
    assert table["<=3"][0] == 2 and table["<=3"][1] == pytest.approx(0.5)  # 0.2 is below ~0.48
    assert table[">=9"] == (1, 0.0, pytest.approx(0.8))


def test_empty_scores_raise(tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    man.write_text("path,text,phonemes\n")
    scores = tmp_path / "s.csv"
    scores.write_text("path,text,label,kind,sys\n")
    with pytest.raises(ValueError, match="no pairs"):
        length_table(scores, man)

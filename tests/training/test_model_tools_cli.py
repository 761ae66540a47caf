"""`openkws eval results-table|length-frr|background-probe` and `openkws export quantize` (were
``python -m`` scripts): each runs from the root CLI and answers bad input with what is accepted."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from typer.testing import CliRunner, Result

from openkws.cli import app

runner = CliRunner()


def said(r: Result) -> str:
    """The output with the error box and its line wrapping folded away."""
    return re.sub(r"[│╭╮╰╯─\s]+", " ", r.output)


def test_results_table_renders_rows_and_refuses_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "asyp-synth").mkdir()
    m = {"eer": 0.057, "auc": 0.9, "ap": 0.8}
    (tmp_path / "asyp-synth" / "pairs.json").write_text(
        json.dumps({"systems": {"openkws:x": {"easy": m, "hard": m}}})
    )
    r = runner.invoke(app, ["eval", "results-table", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("| # | system |") and "| 5.7% | 0.900 | 0.800 |" in said(r)
    r = runner.invoke(app, ["eval", "results-table", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "is not a folder" in said(r)


def test_length_frr_prints_buckets_and_explains_bad_input(tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    man.write_text("path,text,phonemes\na.wav,hi,HH AY\n")
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "label", "kind", "sys"])
        w.writerows([["x", "hi", 1, "positive", 0.9]] + [["z", "o", 0, "easy", s / 100] for s in range(50)])
    r = runner.invoke(app, ["eval", "length-frr", str(scores), "--manifest", str(man), "--far", "0.02"])
    assert r.exit_code == 0, r.output
    assert "sys @ 2% easy FAR: <=3 phones: FRR 0.0% (n=1, median 0.90)" in said(r)
    r = runner.invoke(app, ["eval", "length-frr", str(scores), "--manifest", str(man), "--far", "1.5"])
    assert r.exit_code == 2 and "--far must be between 0 and 1" in said(r)
    r = runner.invoke(app, ["eval", "length-frr", str(man), "--manifest", str(man)])  # not a scores file
    assert r.exit_code == 2 and "scores.csv of `openkws eval pairs --out`" in said(r)
    r = runner.invoke(app, ["eval", "length-frr", str(tmp_path / "none.csv"), "--manifest", str(man)])
    assert r.exit_code == 2 and "does not exist" in said(r)


def test_background_probe_needs_an_existing_model(tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    man.write_text("path,text\n")
    r = runner.invoke(
        app, ["eval", "background-probe", "--model", str(tmp_path / "no"), "--manifest", str(man)]
    )
    assert r.exit_code == 2 and "does not exist" in said(r)


def test_export_quantize_explains_bad_choices(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    r = runner.invoke(app, ["export", "quantize", "--model", str(tmp_path), "--out", out, "--method", "fast"])
    assert r.exit_code == 2 and "method must be 'static' or 'dynamic'" in said(r)
    r = runner.invoke(app, ["export", "quantize", "--model", str(tmp_path), "--out", out, "--roles", "pool"])
    assert r.exit_code == 2 and "cannot quantise ['pool']" in said(r)
    r = runner.invoke(app, ["export", "quantize", "--model", str(tmp_path), "--out", out])
    assert r.exit_code == 2 and "static quantisation needs --manifest" in said(r)


def test_export_needs_exactly_one_source(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")
    for args in ([], ["--checkpoint", str(ckpt), "--untrained", "logmel"]):
        r = runner.invoke(app, ["export", "--out", out, *args])
        assert r.exit_code == 2 and "give exactly one of --checkpoint or --untrained" in said(r), r.output
    assert not (tmp_path / "out").exists()

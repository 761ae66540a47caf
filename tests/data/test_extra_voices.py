"""More voices for a corpus: planning over train texts, real rendering, splicing that keeps the
corpus rows' paths (the feature cache names shards by them), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openkws.training.data.cli import app
from openkws.training.data.extra_voices import ExtraPlan, plan_extra, render_extra, splice
from openkws.training.data.manifest import ManifestRow, read_manifest, write_manifest


def _base(tmp: Path) -> Path:
    rows = [
        ManifestRow(
            "clips/0000/0000000.wav", "hello", "HH AH L OW", "espeak:en-us+m3", "espeak", 0.5, "train"
        ),
        ManifestRow("clips/0000/0000001.wav", "goodbye", "G UH D B AY", "flite:slt", "flite", 0.6, "train"),
        ManifestRow("clips/0000/0000002.wav", "seven", "S EH V AH N", "piper:joe", "piper", 0.5, "dev"),
    ]
    write_manifest(tmp / "manifest.csv", rows)
    return tmp / "manifest.csv"


def test_plan_takes_every_train_text_once_before_twice(tmp_path: Path) -> None:
    specs = plan_extra(read_manifest(_base(tmp_path)), ExtraPlan("espeak:en-us+f3", 3))
    texts = [s.text for s in specs]
    assert sorted(texts[:2]) == ["goodbye", "hello"]  # the dev text "seven" is never used
    assert all(s.split == "train" and s.voice == "espeak:en-us+f3" for s in specs)
    assert specs[0].phonemes == tuple({"hello": "HH AH L OW", "goodbye": "G UH D B AY"}[texts[0]].split())
    assert len({s.seed for s in specs}) == 3  # every rendition its own perturbation


def test_render_and_splice_keep_base_paths(tmp_path: Path) -> None:
    (tmp_path / "synth").mkdir()
    base = _base(tmp_path / "synth")
    specs = plan_extra(read_manifest(base), ExtraPlan("espeak:en-us+f3", 2))
    rows = render_extra(specs, tmp_path / "extra", workers=1, progress=False)
    assert len(rows) == 2 and all((tmp_path / "extra" / r.path).stat().st_size > 1000 for r in rows)
    n = splice(base, tmp_path / "extra" / "manifest.csv", tmp_path / "synth" / "spliced.csv", at=1)
    spliced = read_manifest(tmp_path / "synth" / "spliced.csv")
    assert n == 5 and [r.path for r in spliced][:1] + [r.path for r in spliced][3:] == [
        "clips/0000/0000000.wav", "clips/0000/0000001.wav", "clips/0000/0000002.wav"
    ]  # fmt: skip
    assert all((tmp_path / "synth" / r.path).is_file() for r in spliced[1:3])
    # a rerun keeps the rendered clips and rebuilds their rows
    again = render_extra(specs, tmp_path / "extra", workers=1, progress=False)
    assert [r.path for r in again] == [r.path for r in rows]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    base = _base(tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        plan_extra(read_manifest(base), ExtraPlan("piper:joe", 0))
    write_manifest(tmp_path / "devonly.csv", [r for r in read_manifest(base) if r.split == "dev"])
    with pytest.raises(ValueError, match="no split=train rows"):
        plan_extra(read_manifest(tmp_path / "devonly.csv"), ExtraPlan("piper:joe", 2))
    with pytest.raises(ValueError, match="--at must be between 0 and 3"):
        splice(base, base, tmp_path / "x.csv", at=7)
    r = CliRunner().invoke(
        app, ["voices", "--voice", "nope:x", "--base", str(base), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "unknown voice 'nope:x'" in r.output
    r = CliRunner().invoke(app, ["voices", "--base", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "openkws data synth" in r.output

"""`openkws data synth`: a tiny recipe rendered twice (2 workers vs 1) gives identical manifests and audio."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from openkws.training.data.manifest import COLUMNS, read_manifest
from openkws.training.data.plan import RECIPES, build_plan
from openkws.training.data.splits import check_disjoint
from openkws.training.data.synth import finalize_manifest, run_synthesis


def _audio_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("synth_a"), tmp_path_factory.mktemp("synth_b")
    res_a = run_synthesis(RECIPES["tiny"], a, seed=3, workers=2, progress=False)
    res_b = run_synthesis(RECIPES["tiny"], b, seed=3, workers=1, progress=False)
    assert res_a.failed == 0 and res_b.failed == 0
    assert res_a.rendered == res_b.rendered == RECIPES["tiny"].num_clips
    return a, b


def test_same_seed_same_manifest_and_audio(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    ha, hb = _audio_hashes(a), _audio_hashes(b)
    assert len(ha) == RECIPES["tiny"].num_clips
    assert ha == hb


def test_manifest_columns_and_content(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    header = (a / "manifest.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == COLUMNS
    rows = read_manifest(a / "manifest.csv", absolute=True)
    assert {r.split for r in rows} == {"train", "dev", "test"}
    check_disjoint(r.as_dict() for r in rows)
    for r in rows:
        assert Path(r.path).exists()
        assert 0.15 < r.duration < 4.0
        assert r.phonemes and r.voice.startswith(r.engine + ":")


def test_resume_skips_existing_and_rerenders_missing(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    before = (a / "manifest.csv").read_bytes()
    victim = a / build_plan(RECIPES["tiny"], seed=3)[5].path
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    victim.unlink()
    res = run_synthesis(RECIPES["tiny"], a, seed=3, workers=1, progress=False)
    assert (res.rendered, res.skipped) == (1, RECIPES["tiny"].num_clips - 1)
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == digest
    assert (a / "manifest.csv").read_bytes() == before


def test_other_seed_refused_in_same_dir(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    with pytest.raises(SystemExit, match="another recipe/seed"):
        run_synthesis(RECIPES["tiny"], a, seed=4, workers=1, progress=False)


def test_finalize_lists_only_present_clips(tmp_path: Path) -> None:
    plan = build_plan(RECIPES["tiny"], seed=3)
    assert finalize_manifest(tmp_path, plan) == []

"""`openkws eval streams`: end to end on a tiny synthesized fixture, plus the scoring rules by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from openkws.training.eval_streams.build import Stream, build, read_manifest
from openkws.training.eval_streams.conditions import Backgrounds, build_stream
from openkws.training.eval_streams.engine_adapter import Event
from openkws.training.eval_streams.scoring import Scores, score_stream
from openkws.training.eval_streams.sources import Segment, contains_text

KEYWORDS = ("computer", "play music", "okay nova")


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three keyword clips (espeak-ng) and a negatives folder: a sentence with a transcript + noise."""
    from openkws.training.data.audio import write_wav
    from openkws.training.data.tts import synthesize

    root = tmp_path_factory.mktemp("streams_fixture")
    rows = []
    for i, kw in enumerate(KEYWORDS):
        write_wav(root / "clips" / f"{i}.wav", synthesize(kw, "espeak:en-us+m3", seed=i))
        rows.append({"path": f"clips/{i}.wav", "text": kw.upper()})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text"])
        w.writeheader()
        w.writerows(rows)
    neg = root / "negatives"
    said = "my computer is in the other room and the weather is nice today"
    write_wav(neg / "talk.wav", synthesize(said, "flite:slt", seed=3))
    (neg / "talk.txt").write_text(said)
    write_wav(
        neg / "hum.wav", np.random.default_rng(0).standard_normal(16_000 * 20).astype(np.float32) * 0.02
    )
    return root / "manifest.csv", neg


def test_end_to_end_on_the_tiny_fixture(fixture_set: tuple[Path, Path], tmp_path: Path) -> None:
    from openkws.training.eval_streams.run import StreamsConfig, run_streams

    manifest, neg = fixture_set
    cfg = StreamsConfig(
        manifest=manifest,
        out=tmp_path / "out",
        cache=tmp_path / "cache",
        conditions=("quiet", "noise"),
        negatives=(str(neg),),
        proxies=("text",),
    )
    report = run_streams(cfg)
    s = report["systems"]["openkws-text"]  # type: ignore[index]
    assert report["keywords"] == 3 and report["clips"] == 3 and s["positives"] == 6
    for t in ("0.1", "0.5", "1"):
        frr = s["targets"][t]["frr"]
        assert 0.0 <= frr <= 1.0 and set(s["targets"][t]["by_condition"]) == {"quiet", "noise"}
    # "computer" is said in the transcribed negative: its hours leave that file out
    assert s["keyword_hours"] < 3 * s["negative_hours"]
    for name in ("streams.json", "streams.md", "det.png", "score_hist.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    md = (tmp_path / "out" / "streams.md").read_text()
    for budget in ("0.5", "1"):  # the targets are per condition at 0.5 FA/h
        assert f"FRR at {budget} FA/h per keyword, by condition:" in md
        assert f"FRR at {budget} FA/h per keyword, by keyword length in phones" in md
    assert json.loads((tmp_path / "out" / "streams.json").read_text())["manifest"] == str(manifest)
    # a rerun reuses the built audio and the per-stream events
    index = next((tmp_path / "cache").glob("*/streams.json"))
    mtime = index.stat().st_mtime
    assert run_streams(cfg)["systems"] == json.loads(json.dumps(report["systems"]))
    assert index.stat().st_mtime == mtime


def test_bad_inputs_are_clear_errors(fixture_set: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, neg = fixture_set
    with pytest.raises(FileNotFoundError, match="openkws data asterisk"):
        read_manifest(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.wav,x\n")
    with pytest.raises(ValueError, match="'path' and 'text'"):
        read_manifest(bad)
    with pytest.raises(ValueError, match="unknown condition"):
        build(manifest, tmp_path / "c", conditions=("underwater",), negatives=(str(neg),))
    with pytest.raises(ValueError, match="neither"):
        build(manifest, tmp_path / "c2", conditions=("quiet",), negatives=("podcasts",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        build(manifest, tmp_path / "c3", conditions=("quiet",), negatives=(str(tmp_path / "empty"),))


def test_cli_rejects_unknown_options() -> None:
    from typer.testing import CliRunner

    from openkws.training.eval_cli import eval_app

    r = CliRunner().invoke(eval_app, ["streams", "--proxy", "phonetic"])
    assert r.exit_code == 2 and "choose from text, tts, both" in r.output
    r = CliRunner().invoke(eval_app, ["streams", "--peer", "pocketsphinx"])  # peers: bench/streams_peers.py
    assert r.exit_code == 2 and "No such option" in r.output
    r = CliRunner().invoke(eval_app, ["bank", "--stride", "0"])
    assert r.exit_code == 2 and "stride must be >= 1" in r.output


def test_conditions_place_clips_with_two_to_three_seconds_of_background() -> None:
    rng = np.random.default_rng(0)
    clip = np.sin(np.arange(8000) / 5.0).astype(np.float32)
    music = Segment("music:x", "music", np.sin(np.arange(48000) / 3.0).astype(np.float32))
    rir = np.exp(-np.arange(4000) / 600.0) * np.random.default_rng(1).standard_normal(4000)
    bg = Backgrounds([music], [], [rir.astype(np.float32)])
    for cond in ("quiet", "noise", "music", "reverb"):
        audio, placed = build_stream(cond, [(0, "a", clip), (1, "b", clip)], bg, rng)
        assert [p.keyword for p in placed] == ["a", "b"]
        assert 2.0 <= placed[0].start_s <= 3.1 and 2.0 <= placed[1].start_s - placed[0].end_s <= 3.6
        assert audio.shape[0] / 16_000 - placed[1].end_s >= 2.0
    with pytest.raises(ValueError, match="babble"):
        bg.track("babble", 100, rng)


def test_scoring_counts_hits_by_overlap_and_false_alarms_outside_transcripts() -> None:
    pos = Stream("p", "quiet", "", 10.0, placed=[])
    from openkws.training.eval_streams.conditions import Placed

    pos.placed = [Placed("stop", 2.0, 2.5, 0), Placed("go", 5.0, 5.4, 1)]
    neg = Stream(
        "n",
        "negative",
        "",
        3600.0,
        spans=[(10.0, 14.0, "recorded", "please stop now"), (20.0, 24.0, "music", "")],
    )
    sc = Scores(["stop", "go"])
    score_stream(
        sc,
        pos,
        [
            Event("stop", 0.8, 1.8, 2.6, 2.9),
            Event("go", 0.9, 3.0, 4.0, 4.2),
            Event("stop", 0.7, 5.0, 5.4, 5.6),
        ],
    )
    assert sc.pos_level == [0.8, -np.inf] and sc.pos_hits[0] == [(0.8, pytest.approx(0.4))]
    score_stream(
        sc,
        neg,
        [
            Event("stop", 0.9, 11.0, 12.0, 12.1),
            Event("stop", 0.6, 21.0, 22.0, 22.1),
            Event("go", 0.5, 11.0, 12.0, 12.1),
        ],
    )
    assert sc.neg == {"stop": [0.6], "go": [0.5]}  # "stop" inside "please stop now" is not a false alarm
    assert sc.hours["stop"] == pytest.approx(1.0 - 4 / 3600) and sc.hours["go"] == pytest.approx(1.0)
    assert sc.threshold_at(0.5) == pytest.approx(0.6, abs=1e-6) and sc.fa_per_kw_hour(0.55) == pytest.approx(
        1 / (2 - 4 / 3600)
    )
    assert contains_text("Please STOP now.", "stop") and not contains_text("stopped", "stop")


def test_proxy_kinds_whitened_forms() -> None:
    """Issue 26's kinds from text proxies and mean rendition embeddings, on a white background."""
    from openkws.engine.whitening import fit_whitening
    from openkws.training.eval_streams.engine_adapter import KINDS, kind_floor, kind_proxies

    eye = np.eye(3)
    w = fit_whitening(np.concatenate([eye, -eye]))  # mean 0, covariance c * I: whitening = identity
    text = np.array([[1.0, 0.0, 0.0]], np.float32)
    plain, tempo = np.array([[0.0, 0.5, 0.0]]), np.array([[0.0, 0.0, 0.8]])
    got = {k: kind_proxies(k, text, plain, tempo, w)[0] for k in KINDS}
    np.testing.assert_allclose(got["tts"], [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(got["tts-white"], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(got["both-white"], [0.5**0.5, 0.0, 0.5**0.5], atol=1e-6)
    np.testing.assert_allclose(got["both-joint"], np.array([1.0, 0.0, 0.8]) / np.hypot(1.0, 0.8), atol=1e-6)
    assert kind_floor("tts-white", 0.4) < kind_floor("text", 0.4) == 0.4

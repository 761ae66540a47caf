"""Smoke versions of each protocol on seconds of audio: they assert only that the numbers come out
well-formed (right shapes, finite, in range). Accuracy and speed belong to the benchmark itself."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest

from bench.detectors import ScoreTrace, SweepEvents, make_detector
from bench.streaming import ScoredStream, summarize, sweep

from .conftest import KEYWORDS


def _need(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} is a bench dependency (`make setup` installs it)")


def _well_formed_curve(curve) -> None:
    assert curve.hits.shape == curve.fas.shape == (len(curve.keywords), curve.thresholds.size)
    assert curve.thresholds.size >= 1
    assert np.all(curve.hits <= curve.positives[:, None])
    frr, fa = curve.frr, curve.fa_per_hour
    assert np.all((frr >= 0) & (frr <= 1)) and np.all(fa >= 0) and np.all(np.isfinite(fa))
    s = summarize(curve)
    for target in ("0.5", "1"):
        assert 0.0 <= s[target]["frr"] <= 1.0


@pytest.mark.parametrize("module", ["bench.streaming", "bench.detectors.base"])
def test_bench_doctests(module: str) -> None:
    # pytest's --doctest-modules skips bench/ (it is not a package on the test path); run them here
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _score(det, audio, occ, keywords) -> None:
    det.enroll(list(keywords), getattr(det, "_smoke_templates", None))
    out = det.process(audio)
    assert isinstance(out, ScoreTrace | SweepEvents)
    if isinstance(out, ScoreTrace):
        assert out.times.ndim == 1 and np.all(np.diff(out.times) >= 0)
        assert out.times.size == 0 or (out.times[0] > 0 and out.times[-1] <= len(audio) / 16_000 + 1e-6)
        for kw in keywords:
            assert out.scores[kw].shape == out.times.shape and np.all(np.isfinite(out.scores[kw]))
    curve = sweep([ScoredStream("smoke", len(audio) / 16_000, occ, out)], list(keywords))
    _well_formed_curve(curve)


def test_pocketsphinx_stream(short_stream) -> None:
    _need("pocketsphinx")
    audio, occ = short_stream
    det = make_detector("pocketsphinx", grid=(-3.0, -2.0, -1.0))
    _score(det, audio, occ, KEYWORDS)
    assert det.pron["penguin"] and det.pron["hey jarvis"][0] == "HH EY"
    s = det.score_clip(audio[int(1.5 * 16_000) : int(4.5 * 16_000)], "hey jarvis")
    assert math.isfinite(s)
    det.close()


def test_openwakeword_stream(short_stream) -> None:
    _need("pyopen_wakeword")
    audio, occ = short_stream
    det = make_detector("openwakeword")
    assert det.supports("hey jarvis") and not det.supports("penguin")
    with pytest.raises(ValueError, match="no model"):
        det.enroll(["penguin"])
    _score(det, audio, [o for o in occ if o.keyword == "hey jarvis"], ["hey jarvis"])
    det.close()


def test_efficientword_stream(short_stream, tts) -> None:
    _need("eff_word_net")
    audio, occ = short_stream
    det = make_detector("efficientword", hop_s=1.0)
    det._smoke_templates = {
        k: [tts(k, v, seed=2) for v in ("espeak:en-us+f3", "flite:awb")] for k in KEYWORDS
    }
    _score(det, audio, occ, KEYWORDS)
    assert 0.0 <= det.score_clip(audio[: 2 * 16_000], "penguin") <= 1.0


def test_openkws_stream(short_stream, untrained_model) -> None:
    audio, occ = short_stream
    det = make_detector("openkws", model_dir=untrained_model)
    _score(det, audio, occ, KEYWORDS)
    assert -1.0 <= det.score_clip(audio[: 3 * 16_000], "penguin") <= 1.0
    det.add_keyword("lighthouse")
    assert "lighthouse" in det.ids


def test_openkws_tts_stream(short_stream, untrained_model) -> None:
    """openkws with acoustic (TTS) proxies: same engine, other proxies, same well-formed outputs."""
    audio, occ = short_stream
    det = make_detector("openkws-tts", model_dir=untrained_model)
    assert det.name == "openkws-tts"
    _score(det, audio, occ, KEYWORDS)
    text = make_detector("openkws", model_dir=untrained_model)
    text.enroll(list(KEYWORDS))
    assert not np.allclose(det.proxies, text.proxies), "tts proxies must differ from text ones"
    det.add_keyword("lighthouse")
    assert "lighthouse" in det.ids


def test_speed_measure_one_config(stream_wav) -> None:
    _need("pocketsphinx")
    from bench.speed import measure

    row = measure("pocketsphinx", 2, str(stream_wav), seconds=4.0, reps=1, model_dir=None, add=True)
    assert row["keywords"] == 2 and row["rtf"] > 0 and row["peak_rss_mib"] > 0
    assert row["add_keyword"]["median_s"] > 0


def test_pairs_protocol(tmp_path, tts) -> None:
    _need("pocketsphinx")
    from bench.pairs import run_pairs, smoke_manifest

    manifest = smoke_manifest(tmp_path, ["light", "night", "banana"], ["espeak:en-us+f3"])
    r = run_pairs("pocketsphinx", manifest, {}, [], max_clips=None)
    assert r["pairs"]["positive"] == 3 and len(r["scores"]) == sum(r["pairs"].values())
    for kind in ("easy", "hard"):
        m = r["metrics"][kind]
        assert 0.0 <= m["eer"] <= 1.0 and 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["ap"] <= 1.0

"""Cohort normalisation (engine/cohort.py): the z-score, the shipped phrase list, scoring and the
calibration bank on the same scale, and the engine end to end on real speech."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from openkws.engine.calibration import CalibrationError, Calibrator
from openkws.engine.cohort import (
    COHORT_SIZE,
    MAX_PHONES,
    Cohort,
    CohortError,
    load_phrases,
    phone_count,
    squash,
)
from openkws.engine.index import KeywordEntry, KeywordIndex, l2_normalize
from openkws.engine.scoring import ScoreRequest, score_windows
from openkws.engine.spotter import DetectorConfig, Spotter

D = 16


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return l2_normalize(rng.standard_normal((*shape, D)).astype(np.float32))


@pytest.fixture()
def cohort() -> Cohort:
    rng = np.random.default_rng(0)
    return Cohort({2: _unit(rng, 50), 5: _unit(rng, 50), 9: _unit(rng, 50)})


def test_zscores_match_the_definition(cohort: Cohort) -> None:
    rng = np.random.default_rng(1)
    emb, prox = _unit(rng, 7), _unit(rng, 3)
    buckets = np.array([5, 2, 5])
    z = cohort.zscores(emb @ prox.T, emb, buckets)
    for k, b in enumerate(buckets):
        c = emb @ cohort._stack[list(cohort.counts).index(b)].T  # [7, 50]
        want = (emb @ prox[k] - c.mean(1)) / c.std(1)
        np.testing.assert_allclose(z[:, k], want, rtol=1e-4, atol=1e-4)
    z = np.linspace(-5, 15, 50)
    d = np.diff(squash(z))  # affine and increasing: the calibration's exponential tail keeps its shape
    assert np.all(d > 0) and np.allclose(d, d[0])


def test_keywords_use_the_nearest_phone_count(cohort: Cohort) -> None:
    assert [cohort.bucket_of(n) for n in (1, 2, 3, 4, 6, 8, 30)] == [2, 2, 2, 5, 5, 9, 9]
    assert cohort.buckets_of(
        [("S", "T", "AA", "P"), ("HH", "EY", "|", "JH", "AA", "R", "V", "IH", "S")]
    ).tolist() == [5, 9]


def test_unknown_bucket_and_bad_cohorts_are_refused(cohort: Cohort) -> None:
    with pytest.raises(CohortError, match=r"phone counts \[3\] are not all cohorts"):
        cohort.stats(np.zeros((1, D), np.float32), np.array([3]))
    with pytest.raises(CohortError, match="at least one phone count"):
        Cohort({})
    with pytest.raises(CohortError, match="same, non-zero number"):
        Cohort({2: np.zeros((3, D), np.float32), 3: np.zeros((4, D), np.float32)})


def test_malformed_phrase_file_says_what_is_expected(tmp_path: Path) -> None:
    bad = tmp_path / "c.txt"
    bad.write_text("hello world\n")
    with pytest.raises(CohortError, match=r"line 1: expected 'text<TAB>phonemes'"):
        load_phrases(bad)
    empty = tmp_path / "e.txt"
    empty.write_text("\n")
    with pytest.raises(CohortError, match="holds no phrases"):
        load_phrases(empty)


def test_shipped_phrases_cover_every_length_and_hold_no_evaluation_word() -> None:
    from openkws.training.data.keywords import evaluation_keywords
    from openkws.training.data.splits import is_test_word

    phrases = load_phrases()
    assert {n for n, v in phrases.items() if len(v) >= COHORT_SIZE} == set(range(2, MAX_PHONES + 1))
    assert all(phone_count(s) == n for n, v in phrases.items() for s in v)
    from importlib.resources import files

    words = {w for line in files("openkws.engine").joinpath("cohort_phrases.txt").read_text().splitlines()
             for w in line.split("\t")[0].split()}  # fmt: skip
    banned = {w for k in evaluation_keywords() for w in k.split()}
    assert not words & banned
    assert not [w for w in words if is_test_word(w)]


def _tenant(rng: np.random.Generator, thresholds: list[float]) -> tuple[KeywordIndex, list[KeywordEntry]]:
    phon = [("S", "T", "AA", "P"), ("HH", "EY", "|", "JH", "AA", "R", "V", "IH", "S"), ("AH", "P")]
    es = [KeywordEntry(i + 1, "t", f"k{i}", phon[i], thresholds[i], _unit(rng, 1)[0]) for i in range(3)]
    idx = KeywordIndex(D)
    idx.upsert(es)
    return idx, es


def test_score_windows_thresholds_on_the_cohort_scale(cohort: Cohort) -> None:
    rng = np.random.default_rng(2)
    idx, es = _tenant(rng, [0.05, 0.12, 0.18])  # z 0.4, 0.9, 1.35
    emb = _unit(rng, 64)
    t = idx.tenant("t")
    out = score_windows(emb, [ScoreRequest(range(64), t, want_top=True)], cohort=cohort)
    prox = np.stack([e.proxy for e in es])
    want = cohort.normalize(emb @ prox.T, emb, cohort.buckets_of([e.phonemes for e in es]))
    for r, ws in enumerate(out):
        expect = [k + 1 for k in range(3) if want[r, k] >= es[k].threshold]
        assert ws.ids.tolist() == expect
        np.testing.assert_allclose(ws.scores, want[r, np.array(expect, int) - 1], rtol=1e-5)
        assert ws.top == (int(np.argmax(want[r])) + 1, pytest.approx(float(want[r].max()), rel=1e-5))
    assert sum(len(w.ids) for w in out) > 0  # the thresholds let some windows through
    sub = t.subset([2])  # a stream limited to one keyword: same scores for it
    out_sub = score_windows(emb, [ScoreRequest(range(64), t, subset=sub, group=1)], cohort=cohort)
    for a, b in zip(out, out_sub, strict=True):
        assert b.ids.tolist() == [k for k in a.ids.tolist() if k == 2]
    plain = score_windows(emb, [ScoreRequest(range(64), t)])
    assert [w.ids.tolist() for w in plain] != [w.ids.tolist() for w in out]  # the cohort changes decisions


def test_calibration_bank_is_scored_through_the_cohort(cohort: Cohort) -> None:
    rng = np.random.default_rng(3)
    bank = _unit(rng, 600, 3)
    seg, frame = np.zeros(600, np.int64), np.arange(600) * 10
    cal = Calibrator(bank, seg, frame, 0.2, refractory_frames=5, cohort=cohort)
    raw = Calibrator(bank, seg, frame, 0.2, refractory_frames=5)
    proxy = _unit(rng, 1)[0]
    z = cohort.normalize((bank @ proxy).reshape(-1, 1), bank.reshape(-1, D), np.array([5])).reshape(600, 3)
    np.testing.assert_allclose(cal.peaks(proxy, phones=4).scores[:5], np.sort(z.max(1))[::-1][:5], rtol=1e-5)
    t = cal.threshold_for(proxy, 5.0, phones=4)
    assert cal.expected_fa_per_hour(proxy, t, phones=4) == pytest.approx(5.0, rel=0.05)
    assert t != raw.threshold_for(proxy, 5.0)
    with pytest.raises(CalibrationError, match="needs the keyword's phone count"):
        cal.threshold_for(proxy, 5.0)


def test_engine_with_cohort_reports_cohort_scores(
    model_dir: Path, synth: Callable[[str, str], np.ndarray]
) -> None:
    sp = Spotter.load(model_dir, DetectorConfig(cohort=True), device="cpu")
    assert sp.cohort is not None and sp.cohort.counts.tolist() == list(range(2, MAX_PHONES + 1))
    p = sp.pronounce("turn on the lights")
    entry = sp.entries_from([(1, "default", p.text, p.phonemes, -10.0)])[0]  # every window fires
    sp.index.replace_all([entry])
    # frame index -> cohort scores of the windows ending there. Not keyed by FrameScores.time_ms: that
    # is clipped to the audio (0 in the pre-roll, the last sample for the end-of-stream flush frames),
    # so several frames share a time and a dict by time keeps only the last of them.
    frames: dict[int, np.ndarray] = {}
    b = np.array([sp.cohort.bucket_of(phone_count(p.phonemes))])

    def hook(f: object) -> None:
        emb = f.embeddings  # type: ignore[attr-defined]
        frames[f.frame] = sp.cohort.normalize((emb @ entry.proxy)[:, None], emb, b)[:, 0]  # type: ignore[attr-defined, union-attr]

    s = sp.create_stream(score_hook=hook, competition="all")
    s.accept_waveform(synth("please turn on the lights now", "espeak:en-us+m3"))
    s.input_finished()
    dets = sp.decode(s).detections
    assert dets, "threshold -10 on the cohort scale fires"
    seen = np.concatenate(list(frames.values()))
    for d in dets:  # each event reports a window's cohort score, as the hook computes it (end_ms is the
        # speech span's end since issue 23, not a frame time, so match against every scored window)
        assert np.min(np.abs(seen - d.score)) < 1e-4

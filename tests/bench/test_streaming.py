"""Hit / false-alarm matching, threshold sweep and FRR-at-FA/h on hand-made events."""

from __future__ import annotations

import numpy as np
import pytest

from bench.detectors.base import ScoreTrace, SweepEvents, trace_events
from bench.streaming import DetCurve, Occurrence, ScoredStream, frr_at_fa, match, summarize, sweep


def test_match_window_edges_are_inclusive():
    starts, ends = np.array([10.0]), np.array([11.0])
    assert match(np.array([10.0]), starts, ends) == (1, 0)  # at the keyword start
    assert match(np.array([11.5]), starts, ends) == (1, 0)  # end + 0.5 s exactly
    assert match(np.array([9.99]), starts, ends) == (0, 1)  # before the keyword: false alarm
    assert match(np.array([11.51]), starts, ends) == (0, 1)


def test_match_detection_of_another_keyword_is_a_false_alarm():
    # keyword "b" fires where "a" was spoken: "b" has no occurrences in this stream
    assert match(np.array([10.2]), np.zeros(0), np.zeros(0)) == (0, 1)


def test_trace_events_refractory():
    t = np.arange(0, 5, 0.5)
    s = np.array([0, 1, 1, 0, 0, 0, 0, 1, 0, 1], np.float32)
    assert trace_events(t, s, 0.5, refractory_s=1.5).tolist() == [0.5, 3.5]
    assert trace_events(t, s, 0.5, refractory_s=0.5).tolist() == [0.5, 1.0, 3.5, 4.5]
    plateau = np.arange(0, 3.05, 0.1)
    assert trace_events(
        plateau, np.ones_like(plateau, np.float32), 0.5, refractory_s=1.0
    ).tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert trace_events(t, s, 0.5, refractory_s=0.0).tolist() == [0.5, 1.0, 3.5, 4.5]
    assert trace_events(t, s, 0.5, refractory_s=2.0).tolist() == [0.5, 3.5]
    assert trace_events(t, s, 2.0).size == 0


def _trace_stream() -> list[ScoredStream]:
    t = np.arange(0, 60, 0.1)
    a = np.zeros_like(t)
    b = np.zeros_like(t)
    a[(t >= 10.3) & (t < 10.8)] = 0.9  # "a" spoken at 10-11 s: clear hit
    a[(t >= 30.0) & (t < 30.3)] = 0.6  # "a" spoken at 30-31 s: weak hit
    a[(t >= 50.0) & (t < 50.2)] = 0.7  # false alarm on speech without a keyword
    b[(t >= 20.2) & (t < 20.4)] = 0.4  # "b" spoken at 20-21 s: weak
    pos = ScoredStream(
        "pos",
        60.0,
        [Occurrence("a", 10.0, 11.0), Occurrence("b", 20.0, 21.0), Occurrence("a", 30.0, 31.0)],
        ScoreTrace(t, {"a": a, "b": b}),
    )
    tn = np.arange(0, 3540, 0.1)
    na = np.zeros_like(tn)
    na[1000] = 0.95  # one strong false alarm in the negatives
    neg = ScoredStream("neg", 3540.0, [], ScoreTrace(tn, {"a": na, "b": np.zeros_like(tn)}))
    return [pos, neg]


def test_sweep_counts_on_score_traces():
    curve = sweep(_trace_stream(), ["a", "b"])
    assert curve.hours == pytest.approx(1.0)
    assert curve.positives.tolist() == [2, 1]

    def at(th: float) -> tuple[int, int]:
        j = int(np.searchsorted(curve.thresholds, th))
        return int(curve.hits[:, j].sum()), int(curve.fas[:, j].sum())

    # thresholds are the grid values; pick points between the hand-made score levels
    assert at(0.35) == (3, 2)  # everything fires: 3 hits, FA at 50 s and in the negatives
    assert at(0.45) == (2, 2)  # "b" lost
    assert at(0.65) == (1, 2)  # weak "a" lost
    assert at(0.75) == (1, 1)  # the 0.7 false alarm gone
    assert at(0.92) == (0, 1)
    assert curve.fa_per_hour[-1] == 0 and curve.frr[-1] == 1.0  # strict end of the grid


def test_sweep_events_from_a_decoder_grid():
    th = np.array([1e-40, 1e-20, 1e-5])
    pos = ScoredStream(
        "pos",
        1800.0,
        [Occurrence("x", 5.0, 6.0)],
        SweepEvents(th, {"x": [np.array([5.5, 100.0]), np.array([5.5]), np.array([])]}),
    )
    neg = ScoredStream(
        "neg", 1800.0, [], SweepEvents(th, {"x": [np.array([1.0, 2.0, 300.0]), np.array([]), np.array([])]})
    )
    curve = sweep([pos, neg], ["x"])
    assert curve.hits[0].tolist() == [1, 1, 0]
    assert curve.fas[0].tolist() == [4, 0, 0]
    assert curve.fa_per_hour.tolist() == [4.0, 0.0, 0.0]
    assert curve.frr_at(0.5) == 0.0
    assert curve.frr_at(0.0) == 0.0


def test_sweep_rejects_mismatched_grids():
    a = ScoredStream("a", 1.0, [], SweepEvents(np.array([1.0, 2.0]), {}))
    b = ScoredStream("b", 1.0, [], SweepEvents(np.array([1.0, 3.0]), {}))
    with pytest.raises(ValueError, match="grid"):
        sweep([a, b], ["x"])


def test_frr_at_fa_step_and_linear():
    fa = np.array([10.0, 3.0, 1.0, 0.4, 0.0])
    frr = np.array([0.02, 0.05, 0.10, 0.20, 0.50])
    assert frr_at_fa(fa, frr, 1.0) == 0.10
    assert frr_at_fa(fa, frr, 0.5) == 0.20
    assert frr_at_fa(fa, frr, 0.5, "linear") == pytest.approx(0.20 + (0.1 / 0.6) * (0.10 - 0.20))
    assert frr_at_fa(fa, frr, 100.0, "linear") == pytest.approx(0.02)
    # a target below every measured point: step says "rejects all", linear heads to (0, 1)
    assert frr_at_fa(np.array([2.0]), np.array([0.1]), 1.0) == 1.0
    assert frr_at_fa(np.array([2.0]), np.array([0.1]), 1.0, "linear") == pytest.approx(0.55)
    # a non-monotone curve: the envelope uses the best FRR reachable within the budget
    assert frr_at_fa(np.array([1.0, 0.5]), np.array([0.4, 0.3]), 1.0) == 0.3
    with pytest.raises(ValueError):
        frr_at_fa(fa, frr, 1.0, "cubic")


def test_summary_groups_read_at_the_global_operating_point():
    curve = DetCurve(
        ["one", "two words"],
        np.array([0.1, 0.5, 0.9]),
        hits=np.array([[10, 8, 2], [10, 4, 0]]),
        fas=np.array([[5, 0, 0], [3, 1, 0]]),
        positives=np.array([10, 10]),
        hours=2.0,
    )
    s = summarize(curve, targets=(0.5, 1.0), groups={"1 word": ["one"], "2 words": ["two words"]})
    assert s["1"]["frr"] == pytest.approx(0.4)  # j=1: 12/20 hits, 0.5 FA/h
    assert s["1"]["by_group"]["1 word"]["frr"] == pytest.approx(0.2)
    assert s["1"]["by_group"]["2 words"]["frr"] == pytest.approx(0.6)
    assert s["1"]["by_group"]["2 words"]["fa_per_hour"] == pytest.approx(0.5)
    assert s["0.5"]["frr"] == pytest.approx(0.4)


def test_det_curve_json_round_trip():
    curve = sweep(_trace_stream(), ["a", "b"])
    back = DetCurve.from_json(curve.to_json())
    assert np.array_equal(back.hits, curve.hits) and back.keywords == curve.keywords
    assert back.frr_at(1.0) == curve.frr_at(1.0)

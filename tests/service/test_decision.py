"""Debounce decisions on hand-made score sequences (frame units)."""

from __future__ import annotations

from openkws.engine.decision import Decider, Hit


def feed(d: Decider, seq: list[dict[int, Hit]], enrolled: set[int]) -> list[tuple[int, float, int, int, int]]:
    out = []
    for t, above in enumerate(seq):
        out += d.step(t, above, enrolled.__contains__)
    out += d.finish(len(seq), enrolled.__contains__)
    return [(x.keyword_id, x.score, x.start_frame, x.end_frame, x.decided_frame) for x in out]


def test_peak_is_reported_once_when_score_falls() -> None:
    seq = [{}, {1: Hit(0.6, 0, 1)}, {1: Hit(0.9, 1, 2)}, {1: Hit(0.7, 2, 3)}, {}, {}]
    assert feed(Decider(hold_frames=10, refractory_frames=5), seq, {1}) == [(1, 0.9, 1, 2, 4)]


def test_hold_limits_latency() -> None:
    seq = [{1: Hit(0.6 + 0.01 * t, t, t + 3)} for t in range(8)]
    out = feed(Decider(hold_frames=2, refractory_frames=100), seq, {1})
    assert out == [(1, 0.62, 2, 5, 2)]  # emitted 2 frames after opening, then refractory


def test_refractory_then_overlap_suppression() -> None:
    # A long window keeps seeing the same utterance (frames 0-9) after the refractory time has passed.
    seq: list[dict[int, Hit]] = [
        {1: Hit(0.8, 0, 9)},
        {},
        {},
        {},
        {1: Hit(0.8, 2, 9)},
        {},
        {1: Hit(0.8, 12, 20)},
        {},
    ]
    out = feed(Decider(hold_frames=5, refractory_frames=2), seq, {1})
    assert [o[2] for o in out] == [0, 12]  # the second sighting overlaps the first event: suppressed


def test_keywords_are_independent() -> None:
    seq = [{1: Hit(0.7, 0, 4), 2: Hit(0.6, 0, 4)}, {}]
    out = feed(Decider(hold_frames=5, refractory_frames=5), seq, {1, 2})
    assert sorted(o[0] for o in out) == [1, 2]


def test_deleted_keyword_is_dropped_not_emitted() -> None:
    d = Decider(hold_frames=5, refractory_frames=5)
    assert d.step(0, {1: Hit(0.9, 0, 3)}, {1}.__contains__) == []
    assert d.step(1, {}, set().__contains__) == []
    assert d.finish(2, set().__contains__) == []


def test_finish_emits_open_candidates() -> None:
    d = Decider(hold_frames=50, refractory_frames=5)
    d.step(0, {3: Hit(0.7, 0, 2)}, {3}.__contains__)
    assert [x.keyword_id for x in d.finish(1, {3}.__contains__)] == [3]


def test_zero_hold_emits_immediately() -> None:
    d = Decider(hold_frames=0, refractory_frames=3)
    assert [x.decided_frame for x in d.step(7, {1: Hit(0.7, 2, 7)}, {1}.__contains__)] == [7]

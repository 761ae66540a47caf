"""The keyword-end decision (``mode="peak"``) and k-consecutive persistence, on synthetic score
sequences (frame units; the engine's frames are 80 ms, so 200 ms is ``hold_frames=2``)."""

from __future__ import annotations

import numpy as np
import pytest

from openkws.engine.decision import Decider, Decision, Hit

THR = 0.5
PEAK_MAX = 2  # frames: 160 ms of 80 ms frames, the engine's floor of 200 ms


def run(d: Decider, scores: list[float], kid: int = 1) -> list[Decision]:
    """Feed one keyword's per-frame best score; windows end at the frame and span 8 frames."""
    out: list[Decision] = []
    for t, s in enumerate(scores):
        out += d.step(t, {kid: Hit(s, t - 7, t)} if s >= THR else {}, {kid}.__contains__)
    return out + d.finish(len(scores), {kid}.__contains__)


def bump(peak_frame: int, n: int = 40, width: float = 3.0, height: float = 0.9) -> list[float]:
    """A smooth score bump peaking at ``peak_frame`` (what a window sliding over a keyword gives)."""
    t = np.arange(n)
    return (0.2 + (height - 0.2) * np.exp(-0.5 * ((t - peak_frame) / width) ** 2)).tolist()


def test_peak_fires_one_frame_after_the_peak_with_the_peak_window() -> None:
    scores = bump(20)
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), scores)
    assert len(out) == 1
    first_over = next(t for t, s in enumerate(scores) if s >= THR)
    assert out[0].decided_frame <= first_over + PEAK_MAX
    assert out[0].decided_frame - first_over <= PEAK_MAX  # within 200 ms of the crossing


def test_peak_fires_the_frame_after_a_sharp_peak() -> None:
    scores = [0.1, 0.3, 0.6, 0.9, 0.7, 0.6, 0.55, 0.52, 0.1]  # peak at frame 3
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), scores)
    assert [(d.score, d.end_frame, d.decided_frame) for d in out] == [(0.9, 3, 4)]


@pytest.mark.parametrize("peak", [5, 11, 23])
def test_peak_decision_within_200ms_of_a_synthetic_peak(peak: int) -> None:
    # A sharp peak (width 1): the score rises above threshold one frame before the peak.
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), bump(peak, width=1.0))
    assert len(out) == 1
    assert out[0].end_frame == peak  # the peak window is reported
    assert 0 < out[0].decided_frame - peak <= PEAK_MAX  # 80-160 ms after the peak, never later


def test_hold_waits_longer_than_peak_on_the_same_scores() -> None:
    scores = [0.1, 0.6, 0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.1]
    hold = run(Decider(3, 12, 0.0, mode="hold"), scores)
    peak = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), scores)
    assert [d.decided_frame for d in hold] == [4]  # the old rule: opened at 1, emitted 3 frames later
    assert [d.decided_frame for d in peak] == [3]  # stopped rising at frame 3
    assert hold[0].score == peak[0].score == 0.9


def test_rising_plateau_is_cut_at_the_deadline() -> None:
    scores = [0.6 + 0.01 * t for t in range(10)]  # keeps rising: never a peak
    out = run(Decider(PEAK_MAX, 100, 0.0, mode="peak"), scores)
    assert [(d.decided_frame, d.score) for d in out] == [(PEAK_MAX, pytest.approx(0.62))]


def test_one_event_per_keyword_despite_a_second_bump_in_the_same_audio() -> None:
    # The score wobbles (0.9, 0.8, 0.85) while the same long window still sees the keyword.
    scores = [0.1, 0.7, 0.9, 0.8, 0.85, 0.8, 0.7, 0.6, 0.1, 0.1]
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), scores)
    assert len(out) == 1


def test_two_utterances_far_apart_give_two_events() -> None:
    scores = bump(5, n=60, width=1.0)[:30] + bump(10, n=30, width=1.0)
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak"), scores)
    assert [d.end_frame for d in out] == [5, 40]


def test_persistence_drops_a_one_frame_blip_and_keeps_a_sustained_score() -> None:
    blip = [0.1, 0.1, 0.9, 0.1, 0.1]
    assert run(Decider(PEAK_MAX, 12, 0.0, mode="peak", persistence=2), blip) == []
    assert len(run(Decider(PEAK_MAX, 12, 0.0, mode="peak", persistence=1), blip)) == 1
    sustained = [0.1, 0.6, 0.9, 0.7, 0.1]
    out = run(Decider(PEAK_MAX, 12, 0.0, mode="peak", persistence=3), sustained)
    assert [(d.score, d.decided_frame) for d in out] == [(0.9, 3)]


def test_persistence_works_with_hold_and_at_stream_end() -> None:
    out = run(Decider(5, 12, 0.0, mode="hold", persistence=2), [0.1, 0.1, 0.9])  # 1 frame at the end
    assert out == []
    out = run(Decider(5, 12, 0.0, mode="hold", persistence=2), [0.1, 0.8, 0.9])
    assert [d.score for d in out] == [0.9]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "fast"}, "decision mode 'fast'"), ({"persistence": 0}, "persistence must be >= 1")],
)
def test_bad_options_are_refused_with_the_accepted_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Decider(2, 12, 0.0, **kwargs)  # type: ignore[arg-type]


def test_peak_with_best_competition_still_emits_only_the_winner() -> None:
    d = Decider(PEAK_MAX, 12, 0.0, competition="best", mode="peak")
    seq = [
        {1: Hit(0.6, 0, 7), 2: Hit(0.55, 0, 7)},
        {1: Hit(0.8, 1, 8), 2: Hit(0.7, 1, 8)},
        {1: Hit(0.7, 2, 9)},
        {},
    ]
    out: list[Decision] = []
    for t, above in enumerate(seq):
        out += d.step(t, above, {1, 2}.__contains__)
    out += d.finish(len(seq), {1, 2}.__contains__)
    assert [(x.keyword_id, x.score) for x in out] == [(1, 0.8)]
    assert [x.keyword_id for x in d.take_lost()] == [2]


def test_settings_carry_the_new_options_and_refuse_bad_values() -> None:
    from pydantic import ValidationError

    from openkws.settings import Settings

    cfg = Settings(decision="peak", persistence=2, cohort="on", peak_max_ms=160).detector_config()
    assert (cfg.decision, cfg.persistence, cfg.cohort, cfg.peak_max_ms) == ("peak", 2, True, 160)
    assert Settings().detector_config().decision == "hold" and not Settings().detector_config().cohort
    for bad in ({"decision": "fast"}, {"persistence": 0}, {"cohort": "maybe"}, {"peak_max_ms": -1}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]

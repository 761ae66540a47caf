"""Score traces in the library (issue 23): ``detect_file(trace=True)``, ``Stream.trace()`` and the plot.

The trace is checked against the detector itself: a detection's score is the trace's best score up
to its decision, a keyword whose threshold is out of reach shows up as a near miss, and a file
streamed in small chunks gives the same trace as the whole file at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openkws import KeywordSpotter, ScoreTrace
from openkws.plot import plot_trace

SR = 16_000


@pytest.fixture()
def private(kws: KeywordSpotter, request: pytest.FixtureRequest) -> KeywordSpotter:
    """The session's engine with a keyword set of this test's own (a tenant per test)."""
    return KeywordSpotter(spotter=kws.spotter, tenant=f"trace-{request.node.name}")


def _check_shape(t: ScoreTrace) -> None:
    assert len(t.times_ms) > 0 and np.all(np.diff(t.times_ms) > 0), t.times_ms
    for k in t.keywords:
        assert k.scores.shape == t.times_ms.shape and np.isfinite(k.scores).all()
        assert k.times_ms is t.times_ms


def test_detect_file_trace_matches_detections(private: KeywordSpotter, wav_of: Callable[..., Path]) -> None:
    hey = private.add_keyword("hey jarvis")
    lights = private.add_keyword("turn on the lights")
    wav = wav_of("hey jarvis, what time is it")
    plain = private.detect_file(wav)
    t = private.detect_file(wav, trace=True)
    _check_shape(t)
    assert list(t.detections) == plain and [d.text for d in plain] == ["hey jarvis"]
    assert [k.text for k in t.keywords] == ["hey jarvis", "turn on the lights"]
    k = t.keyword("hey jarvis")
    assert t.keyword(hey.id) is k and k.threshold == pytest.approx(hey.threshold, abs=1e-6)
    assert k.crossed and k.peak >= k.threshold and 500.0 <= k.peak_ms <= t.times_ms[-1]
    d = plain[0]
    # the detection's score is the best window score the detector saw up to its decision
    upto = k.scores[t.times_ms <= d.decided_ms + 1e-6]
    assert float(upto.max()) == pytest.approx(d.score, abs=2e-3)
    other = t.keyword(lights.id)
    assert not other.crossed and other.peak < lights.threshold
    with pytest.raises(KeyError, match="hey jarvis"):
        t.keyword("computer")


def test_unreachable_threshold_is_a_near_miss(private: KeywordSpotter, wav_of: Callable[..., Path]) -> None:
    wav = wav_of("hey jarvis")
    private.add_keyword("hey jarvis")
    peak = private.detect_file(wav, trace=True).keyword("hey jarvis").peak
    high = min(1.0, peak + 0.05)  # within the 0.15 near-miss margin, out of reach
    private.add_keyword("hey jarvis", threshold=high)
    t = private.detect_file(wav, trace=True)
    assert t.detections == ()
    k = t.keyword("hey jarvis")
    assert not k.crossed and k.threshold == pytest.approx(high, abs=1e-6)
    cands = [c for m in t.near_misses for c in m.candidates if c.text == "hey jarvis"]
    assert cands and max(c.score for c in cands) == pytest.approx(k.peak, abs=2e-3)


def test_stream_trace_is_chunk_size_invariant(private: KeywordSpotter, wav_of: Callable[..., Path]) -> None:
    private.add_keyword("hey jarvis")
    wav = wav_of("okay, hey jarvis", rate=22_050)
    whole = private.detect_file(wav, trace=True)
    audio, rate = sf.read(wav, dtype="int16")
    s = private.create_stream(sample_rate=rate, trace=True)
    for i in range(0, len(audio), 441):  # 20 ms chunks
        s.accept_waveform(audio[i : i + 441])
        s.detections()
    s.input_finished()
    s.detections()
    chunked = s.trace()
    np.testing.assert_allclose(chunked.times_ms, whole.times_ms)
    np.testing.assert_allclose(chunked.keywords[0].scores, whole.keywords[0].scores, atol=2e-3)
    assert [d.text for d in chunked.detections] == [d.text for d in whole.detections]


def test_trace_needs_asking_and_short_audio_has_none(private: KeywordSpotter, tmp_path: Path) -> None:
    private.add_keyword("hey jarvis")
    with pytest.raises(ValueError, match="trace=True"):
        private.create_stream().trace()
    t = private.create_stream(trace=True).trace()  # nothing decoded yet: an empty trace
    assert len(t.times_ms) == 0 and t.detections == ()
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_trace(t, tmp_path / "empty.png")
    short = tmp_path / "short.wav"  # shorter than the shortest window: scored over the pre-roll
    sf.write(short, np.zeros(SR // 10, np.float32), SR)
    t = private.detect_file(short, trace=True)
    assert t.detections == () and np.all(np.diff(t.times_ms) > 0)


def test_plot_trace_writes_a_png(
    private: KeywordSpotter, wav_of: Callable[..., Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the plot/bench/train extras")
    private.add_keyword("hey jarvis")
    private.add_keyword("computer")
    t = private.detect_file(wav_of("hey jarvis"), trace=True)
    out = plot_trace(t, tmp_path / "scores.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

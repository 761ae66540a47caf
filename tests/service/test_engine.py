"""Engine core without a web server: chunk-size invariance, batching invariance, deletes, degenerate input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult, Detection, FrameScores
from openkws.engine.spotter import Spotter
from openkws.engine.stream import KeywordStream
from openkws.engine.stream_input import StreamStateError
from openkws.text import G2P
from tests.service.conftest import KEYWORDS


@pytest.fixture(scope="module")
def spotter(model_dir: Path, g2p: G2P, calibrated_threshold: float) -> Spotter:
    sp = Spotter.load(model_dir, device="cpu", g2p=g2p)
    rows = [
        (i + 1, "default", g2p(t).text, g2p(t).phonemes, calibrated_threshold) for i, t in enumerate(KEYWORDS)
    ]
    sp.index.replace_all(sp.entries_from(rows))
    return sp


def run(sp: Spotter, stream: KeywordStream, audio: np.ndarray, chunk: int) -> DecodeResult:
    out = DecodeResult()
    for i in range(0, len(audio), chunk):
        stream.accept_waveform(audio[i : i + chunk])
        r = sp.decode(stream)
        out.detections += r.detections
        out.near_misses += r.near_misses
    stream.input_finished()
    r = sp.decode(stream)
    out.detections += r.detections
    out.near_misses += r.near_misses
    assert r.finished and stream.finished
    return out


def same_events(a: list[Detection], b: list[Detection]) -> None:
    assert [(d.keyword_id, d.start_ms, d.end_ms, d.decided_ms) for d in a] == [
        (d.keyword_id, d.start_ms, d.end_ms, d.decided_ms) for d in b
    ]
    np.testing.assert_allclose([d.score for d in a], [d.score for d in b], atol=1e-4)


@pytest.mark.parametrize("chunk_ms", [20, 100, 1000])
def test_chunk_size_invariance_events_and_trace(spotter: Spotter, speech: np.ndarray, chunk_ms: int) -> None:
    whole = spotter.create_stream(trace=True, debug=True)
    ref = run(spotter, whole, speech, len(speech))
    assert ref.detections, "the calibrated threshold should produce events"
    s = spotter.create_stream(trace=True, debug=True)
    got = run(spotter, s, speech, SAMPLE_RATE * chunk_ms // 1000)
    same_events(got.detections, ref.detections)
    assert whole.trace is not None and s.trace is not None
    assert [(p.frame, p.keyword_id) for p in s.trace] == [(p.frame, p.keyword_id) for p in whole.trace]
    np.testing.assert_allclose([p.score for p in s.trace], [p.score for p in whole.trace], atol=1e-5)
    assert [len(n.candidates) for n in got.near_misses] == [len(n.candidates) for n in ref.near_misses]


def test_batched_streams_equal_single(spotter: Spotter, speech: np.ndarray) -> None:
    """Decoding several streams in one batch gives each the events it gets alone."""
    alone = run(spotter, spotter.create_stream(), speech, 1600).detections
    streams = [spotter.create_stream() for _ in range(3)]
    outs: list[list[Detection]] = [[] for _ in streams]
    offsets = [0, 320, 800]  # streams at different positions share batches
    for s, off in zip(streams, offsets, strict=True):
        s.accept_waveform(speech[:off])
    pos = 0
    while pos < len(speech):
        for s, off in zip(streams, offsets, strict=True):
            s.accept_waveform(speech[off + pos : off + pos + 1600])
        pos += 1600
        for k, r in enumerate(spotter.decode_streams(streams)):
            outs[k] += r.detections
    for s in streams:
        s.input_finished()
    while any(s.ready() for s in streams):
        for k, r in enumerate(spotter.decode_streams(streams)):
            outs[k] += r.detections
    for o in outs:
        same_events(o, alone)


def test_one_event_per_keyword_utterance(spotter: Spotter, speech: np.ndarray) -> None:
    """Debounce: events of one keyword are at least the refractory time apart and never overlap much."""
    dets = run(spotter, spotter.create_stream(), speech, 3200).detections
    by_kw: dict[int, list[Detection]] = {}
    for d in dets:
        by_kw.setdefault(d.keyword_id, []).append(d)
    for events in by_kw.values():
        for a, b in zip(events, events[1:], strict=False):
            assert b.decided_ms - a.decided_ms >= spotter.config.refractory_ms - 1e-6
            overlap = min(a.end_ms, b.end_ms) - max(a.start_ms, b.start_ms)
            assert overlap <= 0.5 * (b.end_ms - b.start_ms) + 1e-6


def test_event_fields(spotter: Spotter, speech: np.ndarray) -> None:
    dets = run(spotter, spotter.create_stream(), speech, 1600).detections
    duration_ms = 1000 * len(speech) / SAMPLE_RATE
    for d in dets:
        assert d.score >= d.threshold
        assert 0 <= d.start_ms < d.end_ms <= duration_ms
        assert d.end_ms <= d.decided_ms + 1e-6 or d.decided_ms == duration_ms
        assert d.text in KEYWORDS


def test_delete_takes_effect_at_next_decode(
    spotter: Spotter, g2p: G2P, speech: np.ndarray, calibrated_threshold: float
) -> None:
    ids = {e.id for e in spotter.index.tenant("default").entries}
    s = spotter.create_stream()
    half = len(speech) // 2
    s.accept_waveform(speech[:half])
    first = spotter.decode(s).detections
    spotter.index.remove("default", ids)  # every keyword gone
    try:
        s.accept_waveform(speech[half:])
        s.input_finished()
        rest = spotter.decode(s).detections
        assert rest == [], "no event of a deleted keyword after the delete"
        assert all(d.keyword_id in ids for d in first)
    finally:
        rows = [
            (i + 1, "default", g2p(t).text, g2p(t).phonemes, calibrated_threshold)
            for i, t in enumerate(KEYWORDS)
        ]
        spotter.index.replace_all(spotter.entries_from(rows))


def test_keyword_subset(spotter: Spotter, speech: np.ndarray) -> None:
    full = run(spotter, spotter.create_stream(), speech, 16000).detections
    kid = full[0].keyword_id
    only = run(spotter, spotter.create_stream(keyword_subset=[kid]), speech, 16000).detections
    assert only and {d.keyword_id for d in only} == {kid}


def test_degenerate_inputs(spotter: Spotter) -> None:
    # No audio at all: finishing still ends the stream, with no events.
    s = spotter.create_stream()
    s.input_finished()
    r = spotter.decode(s)
    assert r.finished and r.detections == []
    # Shorter than one feature frame, and digital silence: defined, event-free.
    for audio in (np.zeros(100, np.float32), np.zeros(3 * SAMPLE_RATE, np.float32)):
        s = spotter.create_stream(trace=True)
        s.accept_waveform(audio)
        s.input_finished()
        assert spotter.decode(s).finished
    # Audio after the end is an error, reset() starts over.
    with pytest.raises(StreamStateError):
        s.accept_waveform(np.zeros(10, np.float32))
    s.reset()
    s.accept_waveform(np.zeros(10, np.float32))
    assert s.ready()


def test_no_keywords_enrolled(model_dir: Path, g2p: G2P, speech: np.ndarray) -> None:
    sp = Spotter.load(model_dir, device="cpu", g2p=g2p)
    s = sp.create_stream(trace=True, debug=True)
    r = run(sp, s, speech, 8000)
    assert r.detections == [] and r.near_misses == []
    assert s.trace and all(p.keyword_id == -1 for p in s.trace)


def test_concurrent_decode_of_one_stream_is_refused(spotter: Spotter, speech: np.ndarray) -> None:
    """A second decode of a stream while the first runs (held inside the score hook) is refused."""
    import threading

    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hook(_: FrameScores) -> None:
        inside.set()
        release.wait(10)

    s = spotter.create_stream(score_hook=hook)
    s.accept_waveform(SAMPLE_RATE, speech[: 3 * SAMPLE_RATE])
    t = threading.Thread(target=lambda: errors.extend([]) if spotter.decode(s) else None)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(StreamStateError, match="two threads"):
            spotter.decode_streams([s])
        with pytest.raises(StreamStateError, match="being decoded"):
            s.reset()
    finally:
        release.set()
        t.join()
    assert not errors


def test_score_hook_sees_every_window_of_the_plan(spotter: Spotter, speech: np.ndarray) -> None:
    """The public hook gets each evaluated frame's windows, as the window plan lists them."""
    seen: list[FrameScores] = []
    s = spotter.create_stream(score_hook=seen.append)
    s.accept_waveform(speech)
    s.input_finished()
    spotter.decode(s)
    plan = spotter.plan
    assert [f.frame for f in seen] == sorted({t for _, t in plan.positions(s.num_features)})
    for f in seen:
        assert f.starts == tuple(st for st, _ in plan.ending_at(f.frame))
        np.testing.assert_allclose(np.linalg.norm(f.embeddings, axis=1), 1.0, atol=1e-4)


def test_accept_waveform_resamples_and_downmixes(spotter: Spotter, speech: np.ndarray) -> None:
    """The stream owns resampling: 8 kHz stereo in small chunks gives the events of 8 kHz mono whole."""
    import soxr

    low = np.asarray(soxr.resample(speech, SAMPLE_RATE, 8000), np.float32)
    whole = spotter.create_stream()
    whole.accept_waveform(8000, low)
    whole.input_finished()
    ref = spotter.decode(whole).detections
    assert ref
    stereo = np.stack([low, low], axis=1)
    s = spotter.create_stream()
    for i in range(0, len(stereo), 800):
        s.accept_waveform(8000, stereo[i : i + 800])
    assert abs(s.pending_seconds - len(low) / 8000) < 1e-9 and s.pending_bytes == stereo.nbytes
    assert s.received_seconds == pytest.approx(len(low) / 8000)  # accepted, in input time
    s.input_finished()
    got = spotter.decode(s).detections
    assert s.finished and s.pending_bytes == 0 and s.received_seconds == pytest.approx(len(low) / 8000)
    same_events(got, ref)
    with pytest.raises(StreamStateError, match="sample rate changed"):
        t = spotter.create_stream()
        t.accept_waveform(8000, low[:10])
        t.accept_waveform(16000, speech[:10])
    with pytest.raises(ValueError, match="shape"):
        spotter.create_stream().accept_waveform(SAMPLE_RATE, np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="competition"):
        spotter.create_stream(competition="first")  # type: ignore[arg-type]


def test_proxies_are_normalized_and_deterministic(spotter: Spotter, g2p: G2P) -> None:
    inv = g2p.inventory
    seqs = [inv.encode(list(g2p(t).phonemes)) for t in KEYWORDS]
    a = spotter.embed_phoneme_ids(seqs)
    b = spotter.embed_phoneme_ids(seqs[::-1])[::-1]
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert spotter.embed_phoneme_ids([]).shape == (0, spotter.spec.embedding_dim)


def test_enrollment_during_decoding_never_breaks_a_stream(
    spotter: Spotter, g2p: G2P, speech: np.ndarray, calibrated_threshold: float
) -> None:
    """Writers swap snapshots while a stream decodes: no errors, and only enrolled ids are reported."""
    import threading

    extra = [
        (100 + i, "default", g2p(t).text, g2p(t).phonemes, calibrated_threshold)
        for i, t in enumerate(["lights off", "good night", "open the door", "next song"])
    ]
    entries = spotter.entries_from(extra)
    ever = {e.id for e in spotter.index.tenant("default").entries} | {e.id for e in entries}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            k = 0
            while not stop.is_set():
                spotter.index.upsert(entries[k % 4 : k % 4 + 1])
                spotter.index.set_thresholds("default", {entries[(k + 1) % 4].id: calibrated_threshold})
                spotter.index.remove("default", [entries[(k + 2) % 4].id])
                k += 1
                stop.wait(0.001)
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        dets = run(spotter, spotter.create_stream(debug=True), speech, 1600).detections
    finally:
        stop.set()
        t.join()
        spotter.index.remove("default", [e.id for e in entries])
    assert not errors
    assert dets and {d.keyword_id for d in dets} <= ever


def test_front_end_batched_across_streams_equals_each_alone(spotter: Spotter, speech: np.ndarray) -> None:
    """One batched front-end step over rows of different lengths gives each row its own features."""
    fx = spotter.features
    rows = [
        speech[: 3 * SAMPLE_RATE],
        speech[5000 : 5000 + 2 * SAMPLE_RATE],
        speech[:700],
        speech[: 3 * SAMPLE_RATE],
    ]
    empty_mel = np.zeros((0, 32), np.float32)
    steps = fx.step(rows, [empty_mel] * len(rows))
    for audio, step in zip(rows, steps, strict=True):
        alone = fx.features(audio)
        assert step.features.shape == (fx.num_frames(len(audio)), fx.dim) == alone.shape
        np.testing.assert_allclose(step.features, alone, atol=1e-5)

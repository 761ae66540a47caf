"""The catch-up path, engine side: a step capped to a little audio per stream leaves the rest of a
VAD onset's pre-roll burst (or of a stream that fell behind) for later steps, and the events are the
same as decoding it all at once: same keywords, same stream times, on real espeak-ng speech through
the trained model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import Detection
from openkws.engine.spotter import Spotter
from openkws.engine.stream import KeywordStream
from openkws.engine.vad import VadConfig
from openkws.text import G2P
from tests.service.conftest import VOICE, VOICE2, silence
from tests.service.test_trained_model import DEFAULT_MODEL

KEYWORDS = ("turn on the lights", "hey jarvis")
CHUNK = SAMPLE_RATE // 10  # 100 ms, as a streaming client sends
CAP = SAMPLE_RATE // 4  # 250 ms per step: a 1.2 s pre-roll burst takes several steps to drain

Event = tuple[int, str, float, float, float]


@pytest.fixture(scope="module")
def spotter(g2p: G2P) -> Spotter:
    if not (DEFAULT_MODEL / "model.json").is_file():
        pytest.skip(f"no trained model in {DEFAULT_MODEL}")
    sp = Spotter.load(DEFAULT_MODEL, device="cpu", g2p=g2p)
    rows = []
    for k, text in enumerate(KEYWORDS, 1):
        p = sp.pronounce(text)
        rows.append((k, "default", p.text, p.phonemes, sp.default_threshold))
    sp.index.replace_all(sp.entries_from(rows))
    return sp


@pytest.fixture(scope="module")
def quiet_room(synth: Callable[[str, str], np.ndarray]) -> np.ndarray:
    """Keywords at speech onsets after long silences (the gate closes between them)."""
    return np.concatenate(
        [
            silence(4.0),
            synth(KEYWORDS[0], VOICE),
            silence(5.0),
            synth(KEYWORDS[1], VOICE2),
            silence(0.3),
            synth(KEYWORDS[0], VOICE2),
            silence(4.0),
        ]
    )


def events(ds: list[Detection]) -> list[Event]:
    return [(d.keyword_id, d.text, d.start_ms, d.end_ms, d.decided_ms) for d in ds]


def at_once(sp: Spotter, audio: np.ndarray, vad: VadConfig | None) -> list[Detection]:
    """Each 100 ms chunk decoded completely before the next (the gate's burst in one step)."""
    s = sp.create_stream(vad=vad)
    out: list[Detection] = []
    for i in range(0, len(audio), CHUNK):
        s.accept_waveform(audio[i : i + CHUNK])
        out += sp.decode(s).detections
    s.input_finished()
    return out + sp.decode(s).detections


def one_capped_step_per_chunk(sp: Spotter, s: KeywordStream, chunk: np.ndarray) -> list[Detection]:
    """What the batcher does: one capped step per job, the stream resubmitted while it has work."""
    s.accept_waveform(chunk)
    return sp.decode_streams([s], CAP)[0].detections


def test_a_capped_step_holds_the_burst_and_gives_the_same_events(
    spotter: Spotter, quiet_room: np.ndarray
) -> None:
    vad = VadConfig()
    whole = at_once(spotter, quiet_room, vad)
    assert {e[1] for e in events(whole)} == set(KEYWORDS), "the model must detect both keywords"
    s = spotter.create_stream(vad=vad)
    capped: list[Detection] = []
    most_held = 0
    for i in range(0, len(quiet_room), CHUNK):
        capped += one_capped_step_per_chunk(spotter, s, quiet_room[i : i + CHUNK])
        most_held = max(most_held, s.held_samples)
        assert s.backlog_samples == s.held_samples + s.pending_samples
    # the onset released the ~1.2 s pre-roll; each step took at most CAP of it
    assert most_held >= SAMPLE_RATE - CAP, most_held
    s.input_finished()
    capped += spotter.decode(s, CAP).detections
    assert s.finished and s.held_samples == 0
    assert events(capped) == events(whole)
    for a, b in zip(capped, whole, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_a_stream_that_fell_behind_decodes_in_capped_steps_with_the_same_events(
    spotter: Spotter, quiet_room: np.ndarray
) -> None:
    """No gate: 5 s queued at once, decoded in 250 ms steps, against one 10 s step."""
    plain = spotter.create_stream()
    capped = spotter.create_stream()
    whole: list[Detection] = []
    steps: list[Detection] = []
    n_steps = 0
    for i in range(0, len(quiet_room), 5 * SAMPLE_RATE):
        part = quiet_room[i : i + 5 * SAMPLE_RATE]
        plain.accept_waveform(part)
        capped.accept_waveform(part)
        whole += spotter.decode_streams([plain])[0].detections
        while capped.ready():  # never more than CAP per step
            before = capped.pending_samples
            steps += spotter.decode_streams([capped], CAP)[0].detections
            assert before - capped.pending_samples <= CAP
            n_steps += 1
    for s in (plain, capped):
        s.input_finished()
    whole += spotter.decode(plain).detections
    steps += spotter.decode(capped, CAP).detections
    assert n_steps >= len(quiet_room) // CAP
    assert events(steps) == events(whole) and len(whole) >= 2


def test_a_capped_stream_beside_live_ones_in_one_batch(spotter: Spotter, quiet_room: np.ndarray) -> None:
    """The burst's stream and two live streams share capped steps; each gets its own events."""
    vad = VadConfig()
    whole = at_once(spotter, quiet_room, vad)
    live_audio = quiet_room[::-1].copy()  # different audio: the streams' state must not mix
    live_whole = at_once(spotter, live_audio, None)
    gated = spotter.create_stream(vad=vad)
    live = [spotter.create_stream(), spotter.create_stream()]
    got: list[list[Detection]] = [[], [], []]
    for i in range(0, len(quiet_room), CHUNK):
        gated.accept_waveform(quiet_room[i : i + CHUNK])
        for s in live:
            s.accept_waveform(live_audio[i : i + CHUNK])
        for k, r in enumerate(spotter.decode_streams([gated, *live], CAP)):
            got[k] += r.detections
    for k, s in enumerate([gated, *live]):
        s.input_finished()
        got[k] += spotter.decode(s, CAP).detections
    assert events(got[0]) == events(whole)
    assert events(got[1]) == events(got[2]) == events(live_whole)

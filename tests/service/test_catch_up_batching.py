"""The catch-up path, service side, with the real engine and WebRTC VAD on espeak-ng speech: a
stream whose gate just opened holds a ~1.2 s pre-roll burst; in the service's batcher
(:func:`openkws.server.state.make_batcher`) the live streams queued after it are batched first, no
stream feeds more than one live step of audio to a batch, and the burst drains in later batches.
Admission's figures stay right: the lag is the oldest queued input's wait across capped steps, the
held pre-roll is not queued input, and each second of audio is costed once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult
from openkws.engine.spotter import Spotter
from openkws.engine.stream import KeywordStream
from openkws.engine.vad import VadConfig
from openkws.server.batcher import EngineLoad, MicroBatcher
from openkws.server.metrics import Metrics
from openkws.server.sessions import AudioSession, BatchRunner
from openkws.server.state import make_batcher
from openkws.settings import Settings
from openkws.text import G2P
from tests.service.conftest import VOICE, silence

STEP_MS = 400
STEP = STEP_MS * SAMPLE_RATE // 1000
CHUNK = SAMPLE_RATE // 10
LIVE = 8


@pytest.fixture(scope="module")
def engine(model_dir: Path, g2p: G2P) -> Spotter:
    return Spotter.load(model_dir, device="cpu", g2p=g2p)


@pytest.fixture(scope="module")
def onset_audio(synth: Callable[[str, str], np.ndarray]) -> np.ndarray:
    return np.concatenate([silence(3.0), synth("turn on the lights in the kitchen", VOICE)])


def at_onset(sp: Spotter, audio: np.ndarray) -> AudioSession:
    """A gated stream fed 100 ms at a time and decoded in capped steps until its gate opens: it then
    holds the rest of the pre-roll burst."""
    session = AudioSession(sp.create_stream(vad=VadConfig()), SAMPLE_RATE, 1)
    for i in range(0, len(audio), CHUNK):
        session.push_samples(audio[i : i + CHUNK])
        sp.decode_streams([session.stream], STEP)
        if session.stream.held_samples:
            return session
    raise AssertionError("the VAD gate never opened on the speech")


def test_live_streams_are_batched_before_a_burst_and_never_behind_it(
    engine: Spotter,
    onset_audio: np.ndarray,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = at_onset(engine, onset_audio)
    assert burst.stream.held_samples > STEP and burst.catching_up(STEP)
    live = [AudioSession(engine.create_stream(), SAMPLE_RATE, 1) for _ in range(LIVE)]
    for k, s in enumerate(live):
        s.push_samples(onset_audio[-CHUNK * (k + 1) :][:CHUNK])  # 100 ms each: live work
        assert not s.catching_up(STEP)
    upload = AudioSession(engine.create_stream(), SAMPLE_RATE, 1, source="detect")
    assert upload.catching_up(STEP)  # an upload is never live work

    steps: list[list[tuple[int, int]]] = []  # per batch: (session index, 16 kHz samples it fed)
    index = {id(s.stream): k for k, s in enumerate([burst, *live])}
    real = engine.decode_streams

    def recorded(streams: Sequence[KeywordStream], step_samples: int | None = None) -> list[DecodeResult]:
        before = [s.engine_samples for s in streams]
        out = real(streams, step_samples)
        steps.append([(index[id(s)], s.engine_samples - b) for s, b in zip(streams, before, strict=True)])
        return out

    monkeypatch.setattr(engine, "decode_streams", recorded)
    settings = make_settings(live_step_ms=STEP_MS, max_batch=64, inference_workers=1)
    answered: dict[int, list[int]] = {k: [] for k in range(LIVE + 1)}

    async def stream(k: int, s: AudioSession, batcher: MicroBatcher[AudioSession, DecodeResult]) -> None:
        while s.has_work():
            await batcher.submit(s)
            answered[k].append(len(steps))

    async def main() -> None:
        batcher = make_batcher(settings, engine, Metrics())
        tasks = [asyncio.create_task(stream(k, s, batcher)) for k, s in enumerate([burst, *live])]
        await asyncio.sleep(0)  # the burst's job is queued first, then the live ones
        assert batcher.catch_up_depth == 1 and batcher.depth == LIVE + 1
        batcher.start()
        await asyncio.gather(*tasks)
        await batcher.stop()

    asyncio.run(main())
    # the first batch: every live stream first, the burst in the one catch-up place, capped
    assert [k for k, _ in steps[0]] == [*range(1, LIVE + 1), 0]
    assert all(answered[k] == [1] for k in range(1, LIVE + 1)), answered
    # no stream ever fed more than one live step to a batch; the burst drained over later batches
    assert all(fed <= STEP for batch in steps for _, fed in batch)
    assert len(answered[0]) >= 3 and burst.stream.held_samples == 0 and not burst.has_work()


def test_lag_is_the_oldest_queued_inputs_wait_across_capped_steps(engine: Spotter) -> None:
    """A stream 2 s behind, decoded 400 ms a step: every step's lag counts from the oldest input
    still queued (it arrived 2 s ago), not from the previous step's start."""
    metrics = Metrics()
    loads = [EngineLoad(slots=1) for _ in range(2)]
    s = AudioSession(engine.create_stream(), SAMPLE_RATE, 1)
    t = time.monotonic()
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    arrived = [t - 2.0 + 0.1 * k for k in range(20)]
    for k in range(20):
        s.push_samples(audio[k * CHUNK : (k + 1) * CHUNK], now=arrived[k])
    # input that fell behind stays live work (only a gate's burst is deferred)
    assert s.queued_at == arrived[0] and not s.catching_up(STEP)
    BatchRunner(engine, metrics, loads[0], STEP)([s])
    assert s.stream.consumed_seconds == pytest.approx(STEP_MS / 1000.0)
    assert s.queued_at == arrived[4]  # chunks 0-3 were taken; chunk 4 is the oldest still queued
    BatchRunner(engine, metrics, loads[1], STEP)([s])
    assert s.queued_at == arrived[8]
    # the second step's lag counts from chunk 4's arrival (>= 1.6 s ago), not from the first step
    assert loads[0].backlog_s() >= 2.0 and loads[1].backlog_s() >= 1.6
    run = BatchRunner(engine, metrics, EngineLoad(slots=1), STEP)
    while s.has_work():
        run([s])
    assert s.queued_at is None
    # each second of audio is costed once however many steps it took
    got = metrics.registry.get_sample_value("openkws_audio_seconds_total", {"source": "stream"})
    assert got == pytest.approx(2.0)


def test_a_held_pre_roll_is_not_queued_input(engine: Spotter, onset_audio: np.ndarray) -> None:
    """The burst is old audio by design: with no new input queued, the stream has work (the held
    pre-roll) but no lag; its new input, once it waits behind the burst, is counted."""
    burst = at_onset(engine, onset_audio)
    assert burst.has_work() and burst.stream.pending_samples == 0
    assert burst.queued_at is None
    load = EngineLoad(slots=1)
    t = time.monotonic()
    burst.push_samples(silence(0.1), now=t - 1.0)  # new input, waiting behind the held pre-roll
    assert burst.queued_at == t - 1.0
    BatchRunner(engine, None, load, STEP)([burst])  # the held audio fills the step: input still waits
    assert burst.stream.pending_samples == CHUNK and burst.queued_at == t - 1.0
    assert load.backlog_s() >= 1.0

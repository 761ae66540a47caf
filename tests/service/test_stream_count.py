"""One count of a stream's audio (issue 22): the session's ``received_ms``, admission's measured cost
and the ``openkws_audio_seconds_total`` metric all read the stream's own count
(``StreamInput.samples_in`` via ``KeywordStream.received_seconds`` / ``consumed_seconds``).

The decisive case is a VAD-gated stream at 8 kHz: the engine's clock (16 kHz audio after the gate)
runs far behind the input, so any reader that counted the engine's samples instead would disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from openkws.constants import SAMPLE_RATE
from openkws.engine.spotter import Spotter
from openkws.engine.vad import VadConfig
from openkws.server.batcher import EngineLoad
from openkws.server.metrics import Metrics
from openkws.server.sessions import AudioSession, BatchRunner
from openkws.text import G2P
from tests.service.conftest import silence

RATE = 8000
CHUNK = RATE // 10  # 100 ms frames, as a streaming client sends


def test_session_admission_and_metrics_read_one_count(model_dir: Path, g2p: G2P, speech: np.ndarray) -> None:
    sp = Spotter.load(model_dir, device="cpu", g2p=g2p)
    audio = np.concatenate([silence(3.0), speech, silence(3.0)])
    low = np.asarray(soxr.resample(audio, SAMPLE_RATE, RATE), np.float32)
    metrics = Metrics()
    load = EngineLoad(slots=1, half_life_s=1e12)  # no decay to speak of: its sums are the steps'
    session = AudioSession(sp.create_stream(vad=VadConfig()), RATE, 1)
    step = BatchRunner(sp, metrics, load)
    steps = 0
    for i in range(0, len(low), CHUNK):
        session.push_samples(low[i : i + CHUNK])
        step([session])
        steps += 1
    session.finish()
    while session.has_work():
        step([session])
        steps += 1
    seconds = len(low) / RATE
    stream = session.stream
    assert stream.finished and stream.pending_seconds == 0
    assert session.received_ms == pytest.approx(1000.0 * seconds)
    assert stream.consumed_seconds == pytest.approx(seconds)
    metered = metrics.registry.get_sample_value("openkws_audio_seconds_total", {"source": "stream"})
    assert metered == pytest.approx(seconds, rel=1e-9)
    # admission's cost is busy / audio, and busy is the sum of the recorded steps (no warm-up seed)
    assert load.step_s is not None and load.cost is not None
    assert load.step_s * steps / load.cost == pytest.approx(seconds, rel=1e-6)
    # the gate really dropped audio: a reader of the engine's clock would have disagreed
    assert stream.gate is not None and stream.engine_samples < 0.8 * seconds * SAMPLE_RATE

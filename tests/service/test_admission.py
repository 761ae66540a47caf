"""Admission control on the engine's measured load: the rule on synthetic measurements, then the
service with a slow engine step (a real engine behind a sleep), which must refuse new streams with
1013 + Retry-After and uploads with 503 + Retry-After while the admitted stream carries on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult
from openkws.engine.stream import KeywordStream
from openkws.protocol import CloseCode
from openkws.server.admission import engine_verdict
from openkws.server.batcher import EngineLoad
from openkws.server.metrics import REFUSALS
from tests.service.conftest import START, collect, silence, wav_bytes
from tests.service.test_metrics_health import samples


def test_verdict_admits_below_and_refuses_past_the_budget() -> None:
    load = EngineLoad(slots=2)
    assert engine_verdict(load, 500, 400.0, now=0.0).reason is None  # nothing measured yet
    load.seed(busy_s=0.1, audio_s=8.0)  # the start-up warm-up gives a cost, but no step time
    assert load.cost == pytest.approx(0.0125) and load.step_s is None
    # no step yet: a 100 ms one is assumed, 100 ms / (1 - u) <= 400 ms  <=>  u = (n + 1) x 0.0125 / 2 <= 0.75
    assert engine_verdict(load, 119, 400.0, now=0.0).reason is None
    v = engine_verdict(load, 120, 400.0, now=0.0)  # a cold burst stops here, not at saturation (159)
    assert v.reason == "latency_budget" and v.projected_ms > 400.0
    assert engine_verdict(load, 160, 400.0, now=0.0).projected_ms == float("inf")  # saturated
    load = EngineLoad(slots=2)
    for k in range(10):  # steps of 40 ms that each process 4 stream-seconds: 0.01 worker-s per s
        load.record(busy_s=0.04, audio_s=4.0, lag_s=0.14, now=0.1 * k)
    assert load.cost == pytest.approx(0.01) and load.step_s == pytest.approx(0.04)
    # 40 ms / (1 - u) <= 400 ms  <=>  u <= 0.9  <=>  streams + 1 <= 180
    assert engine_verdict(load, 178, 400.0, now=1.0).reason is None
    v = engine_verdict(load, 180, 400.0, now=1.0)
    assert v.reason == "latency_budget" and "180 streams" in v.message and v.projected_ms > 400.0
    assert engine_verdict(load, 200, 400.0, now=1.0).projected_ms == float("inf")  # u >= 1
    # a queued job that waited past the budget: the engine is behind, whatever the count
    v = engine_verdict(load, 1, 400.0, queued_s=0.5, now=1.0)
    assert v.reason == "backlog" and "540 ms behind" in v.message


def test_backlog_is_the_worst_lag_of_the_last_second() -> None:
    load = EngineLoad(slots=1)
    load.record(busy_s=0.01, audio_s=1.0, lag_s=0.9, now=0.0)
    load.record(busy_s=0.01, audio_s=1.0, lag_s=0.2, now=0.5)
    assert engine_verdict(load, 1, 400.0, now=0.6).reason == "backlog"
    assert engine_verdict(load, 0, 400.0, now=0.6).reason is None  # no open stream to protect
    assert load.backlog_s(now=1.2) == pytest.approx(0.2)  # the 0.9 s lag has left the window
    assert engine_verdict(load, 1, 400.0, now=1.2).reason is None


def test_engine_load_rejects_no_workers() -> None:
    with pytest.raises(ValueError, match="slots must be >= 1"):
        EngineLoad(slots=0)


STEP_SLEEP_S = 1.0


def _slow_engine(c: TestClient) -> None:
    """Every engine step takes STEP_SLEEP_S longer (the fake slow engine of the issue)."""
    spotter = c.app.state.openkws.spotter  # type: ignore[attr-defined]
    real = spotter.decode_streams

    def slow(streams: Sequence[KeywordStream], step_samples: int | None = None) -> list[DecodeResult]:
        time.sleep(STEP_SLEEP_S)
        return real(streams, step_samples)

    spotter.decode_streams = slow


def _wait_until(c: TestClient, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred(c.get("/readyz").json()):
        assert time.monotonic() < deadline, c.get("/readyz").json()
        time.sleep(0.05)


def test_slow_engine_refuses_new_streams_and_uploads_but_keeps_the_open_one(
    make_client: Callable[..., TestClient],
) -> None:
    c = make_client(latency_budget_ms=400.0, retry_after_s=7)
    ready = c.get("/readyz").json()
    assert ready["backlog_ms"] is not None and ready["engine_utilisation"] == 0.0
    _slow_engine(c)
    frame = b"\x00\x00" * (SAMPLE_RATE // 10)
    with c.websocket_connect("/v1/stream") as first:
        first.send_text(json.dumps(START))
        assert first.receive_json()["type"] == "ready"
        for _ in range(5):  # each frame is its own slow step (the worker waits on the batcher)
            first.send_bytes(frame)
            time.sleep(0.05)
        # the measured mean step passes the budget once the slow steps outweigh the warm-up step
        _wait_until(c, lambda r: float(r["backlog_ms"]) > 400.0)
        with c.websocket_connect("/v1/stream") as second:
            msgs, code = collect(second)
        assert code == CloseCode.TRY_AGAIN_LATER
        err = msgs[-1]
        assert err["type"] == "error" and err["code"] == "overloaded" and err["retry_after_s"] == 7
        assert "latency budget 400 ms" in err["message"] and "retry in 7 s" in err["message"]
        r = c.post("/v1/detect", files={"file": ("a.wav", wav_bytes(silence(0.5)), "audio/wav")})
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "overloaded"
        m = samples(c)
        assert "openkws_engine_backlog_seconds{}" in m  # a one-second window: its value is not timed here
        assert m["openkws_engine_step_seconds{}"] > 0.4  # decayed sums: the mean of the slow steps
        assert sum(v for k, v in m.items() if k.startswith("openkws_admission_refusals_total{")) == 2
        assert (
            m.get("openkws_admission_refusals_total{reason=backlog,source=stream}", 0)
            + m.get("openkws_admission_refusals_total{reason=latency_budget,source=stream}", 0)
            == 1
        )
        # the admitted stream is served to the end
        first.send_bytes(frame)
        first.send_text(json.dumps({"type": "stop", "version": 1}))
        msgs, code = collect(first)
        assert code == CloseCode.NORMAL and msgs[-1]["type"] == "summary"
        assert msgs[-1]["audio_ms"] == pytest.approx(600.0)


def test_idle_engine_admits(make_client: Callable[..., TestClient]) -> None:
    """The warm-up gives a cost; an idle engine admits streams and uploads (no refusals counted)."""
    c = make_client()
    assert (
        c.post("/v1/detect", files={"file": ("a.wav", wav_bytes(silence(0.5)), "audio/wav")}).status_code
        == 200
    )
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        ws.send_text(json.dumps({"type": "stop", "version": 1}))
        _, code = collect(ws)
    assert code == CloseCode.NORMAL
    m = samples(c)
    assert m["openkws_engine_cost_seconds_per_stream_second{}"] > 0.0
    assert not any(k.startswith("openkws_admission_refusals_total{") and v for k, v in m.items())
    # every refusal series is exported at 0 before any refusal, so the dashboard's rate() panel has data
    for source, reason in REFUSALS:
        assert m[f"openkws_admission_refusals_total{{reason={reason},source={source}}}"] == 0.0

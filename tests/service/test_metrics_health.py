"""/metrics, /healthz, /readyz; metrics live in a per-app registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from openkws.engine.model_spec import ModelContractError
from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text import G2P
from tests.service.conftest import KEYWORDS, enroll, pcm16, wav_bytes


def samples(c: TestClient) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(c.get("/metrics").text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def total(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix))


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz").json()
    assert r["status"] == "ready" and r["backend"] == {"onnx": "cpu", "index": "cpu", "database": "sqlite"}
    assert r["device"] == {
        "requested": "cpu",
        "onnx_providers": ["CPUExecutionProvider"],
        "fallback": False,
        "warning": None,
    }
    assert r["model_version"].startswith("untrained") and r["max_streams"] == 128


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_readyz_reports_providers_in_use_on_cuda_fallback(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime-gpu without working CUDA libraries: the CUDA provider is offered, the sessions drop it
    with only a log line. On this CPU-only build the same happens when CUDA is claimed to be available."""
    assert "CUDAExecutionProvider" not in ort.get_available_providers(), "needs a CPU-only onnxruntime"
    r = make_client(device="auto").get("/readyz").json()  # nothing offered: CPU, and no fallback
    assert r["backend"]["onnx"] == "cpu"
    assert r["device"] == {
        "requested": "auto",
        "onnx_providers": ["CPUExecutionProvider"],
        "fallback": False,
        "warning": None,
    }
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level(logging.WARNING, logger="openkws.engine.runtime"):
        r = make_client(device="auto").get("/readyz").json()
    assert r["backend"]["onnx"] == "cpu"  # not "cuda", which was only asked for
    dev = r["device"]
    assert (
        dev["requested"] == "auto" and dev["onnx_providers"] == ["CPUExecutionProvider"] and dev["fallback"]
    )
    assert "CUDAExecutionProvider" in dev["warning"] and "cuDNN" in dev["warning"]
    assert any(
        rec.levelno == logging.WARNING and "CUDA FALLBACK" in rec.getMessage() for rec in caplog.records
    )


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_cuda_requested_without_cuda_refuses_to_start(
    make_settings: Callable[..., Settings], g2p: G2P, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cuda`` insists: not offered, or offered and dropped by the sessions, start-up fails and says why."""
    with (
        pytest.raises(ModelContractError, match="onnxruntime offers only"),
        TestClient(create_app(make_settings(device="cuda"), g2p=g2p)),
    ):
        pass
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with (
        pytest.raises(ModelContractError, match="run on CPUExecutionProvider"),
        TestClient(create_app(make_settings(device="cuda"), g2p=g2p)),
    ):
        pass


def test_metrics_cover_the_service(
    make_client: Callable[..., TestClient], speech: np.ndarray, calibrated_threshold: float
) -> None:
    a, b = make_client(), make_client()  # two apps in one process: separate registries
    enroll(a, KEYWORDS, calibrated_threshold)
    a.post("/v1/keywords", json={"text": "€€€"})
    a.post("/v1/detect", files={"file": ("s.wav", wav_bytes(speech), "audio/wav")})
    with a.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le"}))
        ws.receive_json()
        ws.send_bytes(pcm16(speech[:32000]))
        ws.send_text(json.dumps({"type": "stop"}))
        while ws.receive()["type"] != "websocket.close":
            pass
    m = samples(a)
    assert m["openkws_http_requests_total{method=POST,route=/v1/keywords/batch,status=200}"] == 1
    assert m["openkws_http_requests_total{method=POST,route=/v1/keywords,status=422}"] == 1
    assert total(m, "openkws_http_request_duration_seconds_count{method=POST,route=/v1/detect}") == 1
    assert m["openkws_websocket_sessions_total{close_code=1000}"] == 1
    assert m["openkws_active_streams{}"] == 0
    assert (
        m["openkws_audio_seconds_total{source=detect}"] > 7
        and m["openkws_audio_seconds_total{source=stream}"] >= 2
    )
    assert (
        total(m, "openkws_inference_batch_size_count") > 0
        and total(m, "openkws_inference_batch_seconds_count") > 0
    )
    assert "openkws_inference_queue_depth{}" in m
    assert total(m, "openkws_detections_total{source=") >= 1
    assert m["openkws_enrolled_keywords{}"] == len(KEYWORDS)
    assert m["openkws_errors_total{code=invalid_keyword_text}"] == 1
    info = [k for k in m if k.startswith("openkws_model_info")][0]
    assert "index_backend=cpu" in info and "onnx_backend=cpu" in info
    mb = samples(b)
    assert (
        mb["openkws_enrolled_keywords{}"] == 0
        and "openkws_websocket_sessions_total{close_code=1000}" not in mb
    )

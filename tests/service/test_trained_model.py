"""With the trained model in models/default: "hey jarvis" fires on synthesized "hey jarvis" and not
on other speech. Skipped (with the reason) until a trained model with metrics is shipped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text import G2P
from tests.service.conftest import pcm16, silence, wav_bytes

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "src" / "openkws" / "models" / "default"
POSITIVE_VOICES = ("espeak:en-us+m3", "espeak:en-gb+f2", "espeak:en-us+m1")
NEGATIVE_TEXTS = (
    "the weather is lovely today",
    "please turn off the radio in the kitchen",
    "what time does the train leave tomorrow",
)


@pytest.fixture(scope="module")
def trained_model() -> Path:
    spec_path = DEFAULT_MODEL / "model.json"
    if not spec_path.is_file():
        pytest.skip(f"no trained model yet: {spec_path} does not exist")
    spec = json.loads(spec_path.read_text())
    metrics = spec.get("metrics") or {}
    if str(spec.get("model_version", "")).startswith("untrained") or not any(
        isinstance(v, int | float) for v in metrics.values()
    ):
        pytest.skip(f"{spec_path} reports no trained metrics (model_version {spec.get('model_version')!r})")
    return DEFAULT_MODEL


@pytest.fixture
def trained_client(trained_model: Path, tmp_path: Path, g2p: G2P) -> Iterator[TestClient]:
    settings = Settings(model_dir=trained_model, data_dir=tmp_path, device="cpu")
    with TestClient(create_app(settings, g2p=g2p)) as c:
        assert c.post("/v1/keywords", json={"text": "hey jarvis"}).status_code == 201
        yield c


def test_hey_jarvis_detected_and_not_in_other_speech(
    trained_client: TestClient, synth: Callable[[str, str], np.ndarray]
) -> None:
    hits = 0
    for voice in POSITIVE_VOICES:
        clip = np.concatenate([silence(1.0), synth("hey jarvis", voice), silence(1.0)])
        body = trained_client.post(
            "/v1/detect", files={"file": ("p.wav", wav_bytes(clip), "audio/wav")}
        ).json()
        found = [d for d in body["detections"] if d["text"] == "hey jarvis"]
        assert len(found) <= 1, f"one utterance gave {len(found)} events ({voice})"
        hits += bool(found)
    assert hits >= 2, f"'hey jarvis' detected for {hits}/{len(POSITIVE_VOICES)} voices"
    for text in NEGATIVE_TEXTS:
        clip = np.concatenate([silence(0.5), synth(text, POSITIVE_VOICES[0]), silence(0.5)])
        body = trained_client.post(
            "/v1/detect", files={"file": ("n.wav", wav_bytes(clip), "audio/wav")}
        ).json()
        assert body["detections"] == [], f"false alarm on {text!r}: {body['detections']}"


def test_hey_jarvis_over_the_websocket(
    trained_client: TestClient, synth: Callable[[str, str], np.ndarray]
) -> None:
    clip = np.concatenate([silence(1.0), synth("hey jarvis", POSITIVE_VOICES[0]), silence(1.0)])
    with trained_client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le"}))
        assert ws.receive_json()["type"] == "ready"
        data = pcm16(clip)
        for i in range(0, len(data), 3200):
            ws.send_bytes(data[i : i + 3200])
        ws.send_text(json.dumps({"type": "stop"}))
        msgs = []
        while (m := ws.receive())["type"] != "websocket.close":
            msgs.append(json.loads(m["text"]))
    assert [m["text"] for m in msgs if m["type"] == "detection"] == ["hey jarvis"]

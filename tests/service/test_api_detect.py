"""``POST /v1/detect`` with every kind of bad upload: clear 4xx, server and keywords unaffected."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from openkws.audio import AudioFormat, decode_file, pcm_to_float
from openkws.constants import SAMPLE_RATE
from openkws.engine.stream_input import StreamInput
from tests.service.conftest import enroll, wav_bytes


def _tone(seconds: float = 1.0, rate: int = SAMPLE_RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def _encode(fmt: str, subtype: str, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    return wav_bytes(_tone(1.0, rate, channels), rate, fmt, subtype)


GOOD = [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "FLOAT")]


@pytest.mark.parametrize(("fmt", "subtype"), GOOD)
def test_accepted_formats(client: TestClient, fmt: str, subtype: str) -> None:
    r = client.post("/v1/detect", files={"file": ("a", _encode(fmt, subtype, 22_050, 2), "audio/x")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["sample_rate"] == 22_050 and body["channels"] == 2 and body["duration_ms"] == pytest.approx(1000)
    )
    assert body["detections"] == [] or all("keyword_id" in d for d in body["detections"])


def _truncated_wav() -> bytes:
    data = _encode("WAV", "PCM_16")
    return data[: len(data) // 2 + 1]  # cut mid-sample too


def _aiff() -> bytes:
    return _encode("AIFF", "PCM_16")


BAD = [
    ("empty", b"", 400, "empty_audio"),
    ("garbage", b"this is not audio at all" * 10, 415, "undecodable_audio"),
    ("truncated wav", _truncated_wav(), 400, "truncated_audio"),
    ("truncated flac", _encode("FLAC", "PCM_16")[:1500], 400, None),
    ("truncated ogg", _encode("OGG", "VORBIS")[:300], None, None),
    ("aiff", _aiff(), 415, "unsupported_format"),
    ("rate 4000", _encode("WAV", "PCM_16", 4000), 422, "unsupported_sample_rate"),
    ("header only", _encode("WAV", "PCM_16")[:44], 400, "truncated_audio"),
    ("zero samples", wav_bytes(np.zeros(0, np.float32)), 400, "no_audio"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_uploads(
    client: TestClient, name: str, data: bytes, status: int | None, code: str | None
) -> None:
    kid = client.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
    r = client.post("/v1/detect", files={"file": ("x.wav", data, "audio/wav")})
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (name, r.text)
    err = r.json()["error"]
    if code is not None:
        assert err["code"] == code, (name, err)
    assert err["message"] and (
        "WAV" in err["message"]
        or "use" in err["message"]
        or "truncated" in err["message"]
        or "empty" in err["message"]
        or "corrupt" in err["message"]
    ), err
    assert client.get(f"/v1/keywords/{kid}").status_code == 200
    assert (
        client.post(
            "/v1/detect", files={"file": ("ok.wav", _encode("WAV", "PCM_16"), "audio/wav")}
        ).status_code
        == 200
    )


def test_upload_limits(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_upload_bytes=20_000, max_upload_seconds=0.5)
    r = c.post("/v1/detect", files={"file": ("a.wav", _encode("WAV", "PCM_16"), "audio/wav")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    r = c.post("/v1/detect", files={"file": ("a.wav", b"\0" * 200_000, "audio/wav")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"  # refused before parsing
    small = wav_bytes(_tone(0.6, 8000), 8000)
    r = c.post("/v1/detect", files={"file": ("a.wav", small, "audio/wav")})
    assert r.status_code == 413 and "at most 0.5 s" in r.json()["error"]["message"]


def test_missing_file_and_unknown_subset(client: TestClient) -> None:
    r = client.post("/v1/detect")
    assert r.status_code == 422 and "file" in r.json()["error"]["message"]
    r = client.post(
        "/v1/detect",
        files={"file": ("a.wav", _encode("WAV", "PCM_16"), "audio/wav")},
        params={"keywords": [424242]},
    )
    assert r.status_code == 404 and "424242" in r.json()["error"]["message"]


def test_offline_uses_uploaded_keywords(
    client: TestClient, speech: np.ndarray, calibrated_threshold: float
) -> None:
    enroll(client, ["hey jarvis"], calibrated_threshold)
    body = client.post("/v1/detect", files={"file": ("s.wav", wav_bytes(speech), "audio/wav")}).json()
    assert {d["text"] for d in body["detections"]} <= {"hey jarvis"}
    assert body["model_version"].startswith("untrained")


def test_pcm_decoding_matches_soundfile() -> None:
    """A streamed pcm16 frame and the same samples read from a WAV file give identical floats."""
    x = _tone(0.2)
    wav = wav_bytes(x)
    ints, _ = sf.read(io.BytesIO(wav), dtype="int16")
    streamed = pcm_to_float(ints.astype("<i2").tobytes(), AudioFormat(SAMPLE_RATE, "pcm16le", 1))[:, 0]
    np.testing.assert_array_equal(streamed, decode_file(wav, 10).samples[:, 0])


def test_resampler_chunking_is_stable() -> None:
    x = _tone(2.0, 44_100)
    whole = StreamInput()
    whole.accept(44_100, x)
    whole.finish()
    a = whole.take(10 * SAMPLE_RATE)[0]
    chunked = StreamInput()
    for i in range(0, len(x), 882):
        chunked.accept(44_100, x[i : i + 882])
    chunked.finish()
    b = np.concatenate([chunked.take(1000)[0] for _ in range(40)])
    assert len(a) == len(b) == 32_000
    np.testing.assert_allclose(a, b, atol=1e-6)

"""``WS /v1/stream`` end to end with real websocket messages and synthesized speech:
streaming == offline, chunk-size invariance, resampling, deletes mid-stream, every bad input.

``/v1/detect`` decodes the whole file; the streams compared with it run with the server's VAD gate
off (``OPENKWS_VAD=off``; the gate drops trailing silence, which moves a decision at the very end).
The gate's own equalities are in ``test_vad_gate.py`` and ``test_catch_up.py``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from openkws.constants import SAMPLE_RATE
from openkws.protocol import CloseCode
from tests.service.conftest import KEYWORDS, START, collect, enroll, wav_bytes

Event = tuple[int, float, float, float]


def stream_bytes(
    c: TestClient,
    data: bytes,
    bytes_per_chunk: int,
    start: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(start or START))
        ready = ws.receive_json()
        assert ready["type"] == "ready", ready
        for i in range(0, len(data), bytes_per_chunk):
            ws.send_bytes(data[i : i + bytes_per_chunk])
        ws.send_text(json.dumps({"type": "stop", "version": 1}))
        msgs, code = collect(ws)
    return [ready, *msgs], code


def detections(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == "detection"]


def key(ds: list[dict[str, Any]]) -> list[Event]:
    return [(d["keyword_id"], d["start_ms"], d["end_ms"], d["decided_ms"]) for d in ds]


def assert_same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert key(a) == key(b)
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-4)


def int16_bytes(wav: bytes) -> tuple[bytes, int, int]:
    """The exact samples of a PCM_16 file, as the client would stream them."""
    x, rate = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
    return x.astype("<i2").tobytes(), rate, x.shape[1]


@pytest.fixture
def calibrated(make_client: Callable[..., TestClient], calibrated_threshold: float) -> TestClient:
    client = make_client(vad="off")
    enroll(client, KEYWORDS, calibrated_threshold)
    return client


def detect(c: TestClient, wav: bytes, **params: Any) -> dict[str, Any]:
    r = c.post("/v1/detect", files={"file": ("clip.wav", wav, "audio/wav")}, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_streaming_equals_offline(calibrated: TestClient, speech: np.ndarray) -> None:
    wav = wav_bytes(speech)
    offline = detect(calibrated, wav, debug=True)
    assert offline["detections"], "the calibrated threshold should produce events"
    data, _, _ = int16_bytes(wav)
    msgs, code = stream_bytes(calibrated, data, 2 * 1600, {**START, "debug": True})
    assert code == CloseCode.NORMAL
    assert_same(detections(msgs), offline["detections"])
    # Score traces: the near-miss stream (debug) is the same on both paths.
    near = [m for m in msgs if m["type"] == "near_miss"]
    assert [(n["time_ms"], [c["keyword_id"] for c in n["candidates"]]) for n in near] == [
        (n["time_ms"], [c["keyword_id"] for c in n["candidates"]]) for n in offline["near_misses"]
    ]
    for a, b in zip(near, offline["near_misses"], strict=True):
        np.testing.assert_allclose(
            [c["score"] for c in a["candidates"]], [c["score"] for c in b["candidates"]], atol=1e-4
        )
    summary = msgs[-1]
    assert summary["type"] == "summary" and summary["detections"] == len(offline["detections"])
    assert summary["audio_ms"] == pytest.approx(1000 * len(speech) / SAMPLE_RATE)


@pytest.mark.parametrize("chunk_ms", [20, 100, 1000])
def test_chunk_size_invariance(calibrated: TestClient, speech: np.ndarray, chunk_ms: int) -> None:
    data, _, _ = int16_bytes(wav_bytes(speech))
    ref = detect(calibrated, wav_bytes(speech))["detections"]
    msgs, code = stream_bytes(calibrated, data, 2 * SAMPLE_RATE * chunk_ms // 1000)
    assert code == CloseCode.NORMAL
    assert_same(detections(msgs), ref)


def test_resampled_stereo_and_float32(calibrated: TestClient, speech: np.ndarray) -> None:
    """44.1 kHz stereo pcm16 and float32 streams both match the offline result of the same file."""
    import soxr

    x = soxr.resample(speech, SAMPLE_RATE, 44_100)
    stereo = np.stack([x, 0.5 * x], axis=1).astype(np.float32)
    wav = wav_bytes(stereo, 44_100)
    ref = detect(calibrated, wav)
    assert ref["sample_rate"] == 44_100 and ref["channels"] == 2
    data, rate, ch = int16_bytes(wav)
    start = {**START, "sample_rate": rate, "channels": ch}
    msgs, code = stream_bytes(calibrated, data, 2 * ch * 4410, start)
    assert code == CloseCode.NORMAL
    assert_same(detections(msgs), ref["detections"])
    as_float = (np.frombuffer(data, "<i2").astype(np.float32) / 32768.0).astype("<f4").tobytes()
    msgs, code = stream_bytes(calibrated, as_float, 4 * ch * 4410, {**start, "encoding": "float32le"})
    assert code == CloseCode.NORMAL
    assert_same(detections(msgs), ref["detections"])


def test_keyword_subset(calibrated: TestClient, speech: np.ndarray) -> None:
    """Without competition (``all``) a keyword's events do not depend on the other keywords."""
    ref = detect(calibrated, wav_bytes(speech), competition="all")["detections"]
    kid = ref[0]["keyword_id"]
    data, _, _ = int16_bytes(wav_bytes(speech))
    msgs, _ = stream_bytes(calibrated, data, 6400, {**START, "keywords": [kid], "competition": "all"})
    assert msgs[0]["keywords"] == 1
    got = detections(msgs)
    assert got and {d["keyword_id"] for d in got} == {kid}
    assert_same(got, [d for d in ref if d["keyword_id"] == kid])
    offline_subset = detect(calibrated, wav_bytes(speech), keywords=[kid])["detections"]
    assert_same(offline_subset, got)


def test_delete_mid_stream_takes_effect(calibrated: TestClient, speech: np.ndarray) -> None:
    wav = wav_bytes(speech)
    ref = detect(calibrated, wav, competition="all")["detections"]
    data, _, _ = int16_bytes(wav)
    # The keyword whose first event starts latest: stream everything before that event, then delete it.
    target = max(
        {d["keyword_id"] for d in ref}, key=lambda k: min(d["start_ms"] for d in ref if d["keyword_id"] == k)
    )
    cut_ms = min(d["start_ms"] for d in ref if d["keyword_id"] == target)
    cut = int(cut_ms * SAMPLE_RATE / 1000) * 2
    with calibrated.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({**START, "competition": "all"}))
        assert ws.receive_json()["type"] == "ready"
        for i in range(0, cut, 3200):
            ws.send_bytes(data[i : min(i + 3200, cut)])
        assert calibrated.delete(f"/v1/keywords/{target}").status_code == 204
        for i in range(cut, len(data), 3200):
            ws.send_bytes(data[i : i + 3200])
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = collect(ws)
    assert code == CloseCode.NORMAL
    got = detections(msgs)
    assert all(d["keyword_id"] != target for d in got)
    assert_same(got, [d for d in ref if d["keyword_id"] != target])


def test_threshold_patch_mid_stream(calibrated: TestClient, speech: np.ndarray) -> None:
    """Raising every threshold to 1.0 silences the rest of the stream from the next decode on."""
    data, _, _ = int16_bytes(wav_bytes(speech))
    with calibrated.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        for k in calibrated.get("/v1/keywords").json()["items"]:
            calibrated.patch(f"/v1/keywords/{k['id']}", json={"threshold": 1.0})
        for i in range(0, len(data), 3200):
            ws.send_bytes(data[i : i + 3200])
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = collect(ws)
    assert code == CloseCode.NORMAL and detections(msgs) == []


# -- bad input: each case gets an error message + documented close code; nothing else is affected --

BAD_CASES: list[tuple[str, Callable[[WebSocketTestSession], None], int, str]] = [
    (
        "binary before start",
        lambda ws: ws.send_bytes(b"\x00\x00" * 160),
        CloseCode.BINARY_BEFORE_START,
        "start",
    ),
    ("not json", lambda ws: ws.send_text("{oops"), CloseCode.INVALID_MESSAGE, "JSON"),
    ("unknown type", lambda ws: ws.send_text('{"type": "hello"}'), CloseCode.INVALID_MESSAGE, "start"),
    ("missing rate", lambda ws: ws.send_text('{"type": "start"}'), CloseCode.INVALID_MESSAGE, "sample_rate"),
    (
        "stop before start",
        lambda ws: ws.send_text('{"type": "stop"}'),
        CloseCode.INVALID_MESSAGE,
        "start first",
    ),
    (
        "version 2",
        lambda ws: ws.send_text(json.dumps({**START, "version": 2})),
        CloseCode.UNSUPPORTED_VERSION,
        "version 1",
    ),
    (
        "rate 7000",
        lambda ws: ws.send_text(json.dumps({**START, "sample_rate": 7000})),
        CloseCode.UNSUPPORTED_AUDIO_FORMAT,
        "use 8000–48000",
    ),
    (
        "rate 96000",
        lambda ws: ws.send_text(json.dumps({**START, "sample_rate": 96000})),
        CloseCode.UNSUPPORTED_AUDIO_FORMAT,
        "use 8000–48000",
    ),
    (
        "encoding mp3",
        lambda ws: ws.send_text(json.dumps({**START, "encoding": "mp3"})),
        CloseCode.UNSUPPORTED_AUDIO_FORMAT,
        "pcm16le, float32le",
    ),
    (
        "channels 0",
        lambda ws: ws.send_text(json.dumps({**START, "channels": 0})),
        CloseCode.UNSUPPORTED_AUDIO_FORMAT,
        "use 1–8",
    ),
    (
        "unknown keyword",
        lambda ws: ws.send_text(json.dumps({**START, "keywords": [987654]})),
        CloseCode.UNKNOWN_KEYWORD,
        "987654",
    ),
]


def _after_start(action: Callable[[WebSocketTestSession], None]) -> Callable[[WebSocketTestSession], None]:
    def run(ws: WebSocketTestSession) -> None:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        action(ws)

    return run


def _f32_start(ws: WebSocketTestSession) -> None:
    ws.send_text(json.dumps({**START, "encoding": "float32le"}))
    assert ws.receive_json()["type"] == "ready"
    ws.send_bytes(np.array([0.1, np.nan], "<f4").tobytes())


BAD_CASES += [
    (
        "odd byte count",
        _after_start(lambda ws: ws.send_bytes(b"\x00" * 321)),
        CloseCode.TRUNCATED_SAMPLE,
        "multiple of 2 bytes",
    ),
    (
        "oversized frame",
        _after_start(lambda ws: ws.send_bytes(b"\x00" * (64 * 1024 + 2))),
        CloseCode.MESSAGE_TOO_BIG,
        "at most 65536",
    ),
    (
        "second start",
        _after_start(lambda ws: ws.send_text(json.dumps(START))),
        CloseCode.INVALID_MESSAGE,
        "already received",
    ),
    ("NaN samples", _f32_start, CloseCode.INVALID_SAMPLES, "NaN"),
]


def test_every_bad_input_closes_cleanly_and_affects_nothing_else(
    make_client: Callable[..., TestClient], speech: np.ndarray, calibrated_threshold: float
) -> None:
    c = make_client(max_frame_bytes=64 * 1024, vad="off")
    ids = enroll(c, KEYWORDS, calibrated_threshold)
    wav = wav_bytes(speech)
    ref = detect(c, wav)["detections"]
    data, _, _ = int16_bytes(wav)
    chunks = [data[i : i + 3200] for i in range(0, len(data), 3200)]
    per_case = max(1, len(chunks) // (len(BAD_CASES) + 1))
    with c.websocket_connect("/v1/stream") as good:  # a healthy stream runs through all bad cases
        good.send_text(json.dumps(START))
        assert good.receive_json()["type"] == "ready"
        sent = 0
        for name, action, code, hint in BAD_CASES:
            for ch in chunks[sent : sent + per_case]:
                good.send_bytes(ch)
            sent += per_case
            with c.websocket_connect("/v1/stream") as bad:
                action(bad)
                msgs, got = collect(bad)
            assert got == code, name
            assert msgs and msgs[-1]["type"] == "error" and msgs[-1]["close_code"] == code, name
            assert hint in msgs[-1]["message"], (name, msgs[-1]["message"])
        for ch in chunks[sent:]:
            good.send_bytes(ch)
        good.send_text(json.dumps({"type": "stop"}))
        msgs, code = collect(good)
    assert code == CloseCode.NORMAL
    assert_same(detections(msgs), ref)
    assert {k["text"]: k["id"] for k in c.get("/v1/keywords").json()["items"]} == ids
    assert c.get("/readyz").json()["active_streams"] == 0


def test_too_many_streams(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_streams=1)
    with c.websocket_connect("/v1/stream") as first:
        first.send_text(json.dumps(START))
        assert first.receive_json()["type"] == "ready"
        with c.websocket_connect("/v1/stream") as second:
            msgs, code = collect(second)
        assert code == CloseCode.TRY_AGAIN_LATER
        assert msgs[-1]["code"] == "too_many_streams" and "limit is 1" in msgs[-1]["message"]
        first.send_bytes(b"\x00\x00" * 1600)
        first.send_text(json.dumps({"type": "stop"}))
        msgs, code = collect(first)
        assert code == CloseCode.NORMAL and msgs[-1]["type"] == "summary"
    with c.websocket_connect("/v1/stream") as third:  # the slot is free again
        third.send_text(json.dumps(START))
        assert third.receive_json()["type"] == "ready"


def test_idle_timeout(make_client: Callable[..., TestClient]) -> None:
    c = make_client(idle_timeout_s=0.3)
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        msgs, code = collect(ws)
    assert code == CloseCode.IDLE_TIMEOUT and "no message for 0.3 s" in msgs[-1]["message"]


def test_stream_too_long(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_stream_seconds=1.0)
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        for _ in range(3):
            ws.send_bytes(b"\x00\x00" * SAMPLE_RATE)
        msgs, code = collect(ws)
    assert code == CloseCode.STREAM_TOO_LONG and "open a new stream" in msgs[-1]["message"]


def test_empty_stream_gets_summary(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(b"")
        ws.send_text(json.dumps({"type": "stop"}))
        msgs, code = collect(ws)
    assert code == CloseCode.NORMAL
    assert msgs[-1] == {**msgs[-1], "type": "summary", "audio_ms": 0.0, "detections": 0}


def test_client_vanishing_mid_stream(client: TestClient, speech: np.ndarray) -> None:
    data, _, _ = int16_bytes(wav_bytes(speech))
    for stop_first in (False, True):
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps(START))
            assert ws.receive_json()["type"] == "ready"
            for i in range(0, len(data) // 2, 3200):
                ws.send_bytes(data[i : i + 3200])
            if stop_first:  # stop, then leave without reading the summary
                ws.send_text(json.dumps({"type": "stop"}))
    import time

    deadline = time.monotonic() + 10
    while client.get("/readyz").json()["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/readyz").json()["active_streams"] == 0
    msgs, code = stream_bytes(client, data[:32000], 3200)
    assert code == CloseCode.NORMAL and msgs[-1]["type"] == "summary"

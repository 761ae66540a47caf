"""Issue 14 over REST, each test reproducing the probe's original case: strict types, metadata,
visible text rewrites, chunked bodies over the limit, bounded metric labels, decode edge cases."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import event

from openkws.constants import SAMPLE_RATE
from openkws.keywords.store import KeywordNotFound
from tests.service.conftest import KEYWORDS, enroll, wav_bytes


def _series(c: TestClient) -> int:
    return sum(1 for line in c.get("/metrics").text.splitlines() if line and not line.startswith("#"))


# -- 6. strict types ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", ["0.5", True, "1", None])
def test_threshold_of_wrong_type_is_refused(client: TestClient, threshold: object) -> None:
    r = client.post("/v1/keywords", json={"text": "hey jarvis", "threshold": threshold})
    if threshold is None:
        assert r.status_code == 201
        return
    assert r.status_code == 422, r.text  # was 201, stored as 0.5 / 1.0
    assert r.json()["error"]["code"] == "invalid_request" and "threshold" in r.json()["error"]["message"]


def test_patch_threshold_string_is_refused_and_negative_zero_is_zero(client: TestClient) -> None:
    kid = client.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
    r = client.patch(f"/v1/keywords/{kid}", json={"threshold": "0.3"})
    assert r.status_code == 422, r.text
    assert (
        client.patch(f"/v1/keywords/{kid}", json={"threshold": 1}).json()["threshold"] == 1.0
    )  # an int is a number
    r = client.patch(
        f"/v1/keywords/{kid}", content=b'{"threshold": -0.0}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and '"threshold":0.0' in r.text.replace(" ", "")  # was echoed as -0.0
    r = client.post(
        "/v1/keywords",
        content=b'{"text": "stop", "threshold": -0.0}',
        headers={"content-type": "application/json"},
    )
    assert '"threshold":0.0' in r.text.replace(" ", "")


# -- metadata ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_metadata_is_refused(client: TestClient, number: str) -> None:
    body = '{"text": "hey jarvis", "metadata": {"x": {"y": [1, NUMBER]}}}'.replace("NUMBER", number)
    r = client.post("/v1/keywords", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text  # was stored as NaN and returned as null
    assert "metadata.x.y[1]" in r.json()["error"]["message"]
    assert client.get("/v1/keywords").json()["total"] == 0


def test_metadata_size_is_utf8(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_metadata_bytes=4096)
    r = c.post("/v1/keywords", json={"text": "hey jarvis", "metadata": {"k": "é" * 1000}})
    assert r.status_code == 201, r.text  # ~2 KB of UTF-8; was measured as 6,008 ASCII-escaped bytes
    r = c.post("/v1/keywords", json={"text": "stop", "metadata": {"k": "é" * 2100}})
    assert r.status_code == 422 and "UTF-8" in r.json()["error"]["message"]


# -- 5. text rewrites ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("½", "unsupported_character"),
        ("straße", "unsupported_letter"),
        ("100%", "unsupported_character"),
        ("-1", "ambiguous_number"),
    ],
)
def test_ambiguous_text_is_refused_not_rewritten(client: TestClient, text: str, rule: str) -> None:
    r = client.post("/v1/keywords", json={"text": text})
    assert r.status_code == 422, r.text  # was enrolled as "one two", "stra e", "one hundred", "one"
    assert r.json()["error"]["rule"] == rule


def test_rewrites_are_visible(client: TestClient) -> None:
    r = client.post("/v1/keywords", json={"text": "jar\u200dvis"}).json()
    assert r["text"] == "jarvis" and r["rewrites"] == ["removed invisible character U+200D ZERO WIDTH JOINER"]
    r = client.post("/v1/keywords", json={"text": "Café ﬁve 7th"}).json()  # ﬁ: NFKC ligature
    assert r["text"] == "cafe five seventh"
    assert any("NFKC" in w for w in r["rewrites"]) and "accents removed: 'é' -> 'e'" in r["rewrites"]
    assert "number spelled out: '7th' -> 'seventh'" in r["rewrites"]
    assert client.post("/v1/keywords", json={"text": "Hey, Jarvis!"}).json()["rewrites"] == []


# -- 3. chunked bodies over the limit -------------------------------------------------------------------------
def _chunks(total: int, size: int = 64 << 10) -> Iterator[bytes]:
    yield b'{"text": "hey jarvis", "metadata": {"k": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}}'


def test_chunked_json_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/keywords", content=_chunks(5 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text  # was 422 invalid_request "body could not be parsed"
    assert r.json()["error"]["code"] == "body_too_large"
    assert 'openkws_errors_total{code="body_too_large"} 1.0' in client.get("/metrics").text


def test_chunked_upload_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_upload_bytes=1 << 20)
    boundary = "b0undary"

    def multipart() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(40):
            yield b"\0" * (64 << 10)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = c.post(
        "/v1/detect",
        content=multipart(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "body_too_large"
    assert 'openkws_errors_total{code="body_too_large"} 1.0' in c.get("/metrics").text


# -- 4. metric cardinality; per-keyword counts over REST ------------------------------------------------------
def test_detections_do_not_add_a_series_per_keyword(client: TestClient) -> None:
    ids = enroll(client, [f"keyword number {i}" for i in range(1, 41)])
    state = client.app.state.openkws  # type: ignore[attr-defined]
    _series(client)  # the /metrics route's own series exist from here on
    before = _series(client)
    for kid in ids.values():  # every keyword detected, by both paths
        state.record_detections("default", [_Det(kid)], "stream")
        state.record_detections("default", [_Det(kid)], "detect")
    # _total and _created per source: 4 series whatever the number of keywords (was 4 per keyword)
    assert _series(client) - before == 4
    assert "keyword_id" not in client.get("/metrics").text
    top = client.get("/v1/detections/counts", params={"limit": 5}).json()["keywords"]
    assert len(top) == 5 and all(k["detections"] == 2 for k in top)
    first = top[0]["id"]
    client.delete(f"/v1/keywords/{first}")
    listed = {k["id"] for k in client.get("/v1/detections/counts", params={"limit": 1000}).json()["keywords"]}
    assert first not in listed and len(listed) == 39  # deleted keywords leave the counts


class _Det:
    def __init__(self, kid: int) -> None:
        self.keyword_id = kid


def test_detect_counts_real_detections(
    client: TestClient, speech: np.ndarray, calibrated_threshold: float
) -> None:
    ids = enroll(client, KEYWORDS, threshold=calibrated_threshold)
    body = client.post("/v1/detect", files={"file": ("s.wav", wav_bytes(speech), "audio/wav")}).json()
    assert body["detections"], "the calibrated threshold makes some windows fire"
    counts = client.get("/v1/detections/counts").json()["keywords"]
    assert sum(k["detections"] for k in counts) == len(body["detections"])
    assert {k["id"] for k in counts} <= set(ids.values())
    assert 'openkws_detections_total{source="detect"}' in client.get("/metrics").text


def test_metrics_can_require_an_admin_key(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, metrics_auth=True)
    keys = c.app.state.openkws.api_keys  # type: ignore[attr-defined]
    admin, stream = keys.create("acme", "admin").token, keys.create("acme", "stream").token
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": f"Bearer {stream}"}).status_code == 403
    assert c.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert make_client(auth=True).get("/metrics").status_code == 200  # the default: open (SECURITY.md)


# -- tenant filter in the query -------------------------------------------------------------------------------
def test_other_tenants_row_is_never_loaded(client: TestClient) -> None:
    kid = client.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
    store = client.app.state.openkws.store  # type: ignore[attr-defined]
    statements: list[str] = []

    def log(_c: object, _cur: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", log)
    try:
        for tenant in ("other", "default"):
            with contextlib.suppress(KeywordNotFound):
                store.get(tenant, kid)
    finally:
        event.remove(store.engine, "before_cursor_execute", log)
    lookups = [s for s in statements if "FROM keywords" in s]
    assert len(lookups) == 2 and all("keywords.tenant = " in s for s in lookups)  # was a primary-key get


# -- smaller decode cases ----------------------------------------------------------------------------------
def _encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    b = io.BytesIO()
    sf.write(b, audio, rate, format=fmt, subtype=subtype)
    return b.getvalue()


def test_truncated_ogg_is_refused(client: TestClient, speech: np.ndarray) -> None:
    data = _encoded(speech[: 2 * SAMPLE_RATE], SAMPLE_RATE, "OGG", "VORBIS")
    whole = client.post("/v1/detect", files={"file": ("a.ogg", data, "audio/ogg")})
    assert whole.status_code == 200 and whole.json()["duration_ms"] == pytest.approx(2000)
    r = client.post("/v1/detect", files={"file": ("a.ogg", data[: len(data) // 2], "audio/ogg")})
    assert r.status_code == 400, r.text  # was 200 with a fraction of the clip
    assert r.json()["error"]["code"] == "truncated_audio"


def test_ogg_opus_is_accepted(client: TestClient, speech: np.ndarray) -> None:
    data = _encoded(speech[: 2 * SAMPLE_RATE], SAMPLE_RATE, "OGG", "OPUS")
    r = client.post("/v1/detect", files={"file": ("a.opus", data, "audio/ogg")})
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "OGG" and r.json()["duration_ms"] == pytest.approx(2000, abs=30)


def test_flac_without_length_says_so(client: TestClient) -> None:
    data = bytearray(_encoded(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, "FLAC", "PCM_16"))
    data[8 + 13] &= 0xF0  # STREAMINFO total_samples (36 bits) = 0: "unknown", as streaming encoders write
    data[8 + 14 : 8 + 18] = b"\0\0\0\0"
    r = client.post("/v1/detect", files={"file": ("stream.flac", bytes(data), "audio/flac")})
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["code"] == "unknown_length" and "does not declare its length" in err["message"]
    assert " s of audio" not in err["message"]  # was "192153584101141.2 s of audio"


def test_415_names_the_file(client: TestClient) -> None:
    r = client.post("/v1/detect", files={"file": ("notes.txt", b"not audio at all" * 20, "text/plain")})
    assert r.status_code == 415
    message = r.json()["error"]["message"]
    assert "'notes.txt'" in message and "BytesIO" not in message and "0x" not in message
    assert json.loads(r.text)["error"]["code"] == "undecodable_audio"


# -- 6. strict types on the websocket start -------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [{"version": "1"}, {"version": None}, {"sample_rate": "16000"}, {"debug": "yes"}, {"channels": 1.0}],
)
def test_start_of_wrong_type_closes_4001(client: TestClient, change: dict[str, object]) -> None:
    from tests.service.conftest import START, collect

    start = {**START, **change}
    if change.get("version", 1) is None:
        del start["version"]  # a missing version
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(start))
        msgs, code = collect(ws)
    assert code == 4001, msgs  # was accepted ("ready")
    assert msgs[-1]["type"] == "error" and msgs[-1]["code"] == "invalid_message"

"""Every limit answers with a clear error or close code: enrollment rate, keywords per tenant,
streams per key and globally, wall-clock stream duration, body size, a client that stops reading,
and the bounded buffers of the server configuration."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketState

from openkws.audio import AudioFormat
from openkws.engine.spotter import Spotter
from openkws.protocol import CloseCode
from openkws.server.app import create_app
from openkws.server.limits import TokenBucket
from openkws.server.run import KeepaliveProtocol, make_server
from openkws.server.sessions import AudioSession
from openkws.server.stream_handler import StreamHandler
from tests.reliability.conftest import new_tenant
from tests.reliability.test_auth_tenants import START, STOP, collect, refused


def test_enrollment_rate_per_key(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, enroll_rate_per_s=0.01, enroll_burst=2)
    a, b = new_tenant(c, "acme"), new_tenant(c, "globex")
    assert c.post("/v1/keywords", json={"text": "hey jarvis"}, headers=a.h()).status_code == 201
    assert (
        c.post("/v1/keywords/batch", json={"keywords": [{"text": "stop"}]}, headers=a.h()).status_code == 200
    )
    r = c.post("/v1/keywords", json={"text": "play music"}, headers=a.h())
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
    assert int(r.headers["retry-after"]) >= 1 and "per batch" in r.json()["error"]["message"]
    assert c.post("/v1/keywords", json={"text": "play music"}, headers=b.h()).status_code == 201  # per key
    assert c.get("/v1/keywords", headers=a.h()).status_code == 200  # reads are not enrollment


def test_token_bucket_refills() -> None:
    b = TokenBucket(rate=10.0, burst=1, now=0.0)
    assert b.take(now=0.0) == 0.0
    assert abs(b.take(now=0.05) - 0.05) < 1e-9
    assert b.take(now=0.1) == 0.0


def test_keywords_per_tenant(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, max_keywords_per_tenant=3)
    a, b = new_tenant(c, "acme"), new_tenant(c, "globex")
    r = c.post(
        "/v1/keywords/batch", json={"keywords": [{"text": t} for t in ("one", "two", "three")]}, headers=a.h()
    )
    assert r.status_code == 200
    assert (
        c.post("/v1/keywords", json={"text": "two"}, headers=a.h()).status_code == 200
    )  # already enrolled: fine
    r = c.post("/v1/keywords", json={"text": "four"}, headers=a.h())
    assert r.status_code == 409 and r.json()["error"]["code"] == "too_many_keywords", r.text
    assert "at most 3" in r.json()["error"]["message"]
    assert c.get("/v1/keywords", headers=a.h()).json()["total"] == 3  # nothing half-done
    assert c.post("/v1/keywords", json={"text": "four"}, headers=b.h()).status_code == 201  # per tenant
    kid = r = c.get("/v1/keywords", headers=a.h()).json()["items"][0]["id"]
    assert c.delete(f"/v1/keywords/{kid}", headers=a.h()).status_code == 204
    assert c.post("/v1/keywords", json={"text": "four"}, headers=a.h()).status_code == 201


def test_streams_per_key_and_global(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, max_streams_per_key=1, max_streams=2)
    a, b = new_tenant(c, "acme"), new_tenant(c, "globex")
    with c.websocket_connect("/v1/stream", headers=a.h("stream")) as ws1:
        ws1.send_text(json.dumps(START))
        assert json.loads(ws1.receive_text())["type"] == "ready"
        msg, code = refused(c, headers=a.h("stream"))
        assert (
            code == CloseCode.TRY_AGAIN_LATER
            and msg["code"] == "too_many_streams"
            and "per key" in msg["message"]
        )
        with c.websocket_connect("/v1/stream", headers=b.h("stream")) as ws2:  # another key: fine
            ws2.send_text(json.dumps(START))
            assert json.loads(ws2.receive_text())["type"] == "ready"
            msg, code = refused(c, headers=a.h("admin"))  # global limit (2) reached
            assert code == CloseCode.TRY_AGAIN_LATER and "limit is 2" in msg["message"]
            ws2.send_text(STOP)
            assert collect(ws2)[1] == 1000
        ws1.send_text(STOP)
        assert collect(ws1)[1] == 1000
    with c.websocket_connect("/v1/stream", headers=a.h("stream")) as ws:  # the key's slot is free again
        ws.send_text(json.dumps(START))
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_text(STOP)
        assert collect(ws)[1] == 1000


def test_wall_clock_stream_limit(make_client: Callable[..., TestClient]) -> None:
    """A client trickling audio slower than real time cannot hold a stream past max_stream_seconds."""
    c = make_client(max_stream_seconds=1.0, idle_timeout_s=20.0)
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(START))
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_bytes(np.zeros(160, "<i2").tobytes())  # 10 ms of audio, then nothing for a while
        msgs, code = collect(ws)
    assert code == CloseCode.STREAM_TOO_LONG
    assert msgs[-1]["code"] == "stream_too_long" and "open for more than 1 s" in msgs[-1]["message"]


def test_body_size_limit(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=2048)
    r = c.post("/v1/keywords", json={"text": "hey jarvis", "metadata": {"x": "y" * 3000}})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large" and "2048" in r.text
    assert c.post("/v1/keywords", json={"text": "hey jarvis"}).status_code == 201


def test_pending_input_is_accounted(model_dir: Path) -> None:
    """The reader pauses on max_pending_bytes as well as seconds: the session counts queued bytes."""

    fmt = AudioFormat(48_000, "float32le", 8)
    spotter = Spotter.load(model_dir, device="cpu")
    s = AudioSession(spotter.create_stream(), 48_000, 8, fmt)
    s.push_bytes(b"\0" * 4 * 8 * 4800)  # 0.1 s of 8-channel float32 at 48 kHz
    assert s.pending_bytes == 153_600 and abs(s.pending_seconds - 0.1) < 1e-9
    spotter.decode_streams([s.stream])
    assert s.pending_bytes == 0


class _StuckClient:
    """A websocket whose client sends ``start`` and then never reads (nor answers the close)."""

    application_state = WebSocketState.CONNECTED

    def __init__(self) -> None:
        self.received = 0

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        if self.received == 1:
            return {"type": "websocket.receive", "text": json.dumps(START)}
        await asyncio.sleep(3600)
        raise AssertionError

    async def send_text(self, text: str) -> None:
        await asyncio.sleep(3600)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await asyncio.sleep(3600)


def test_client_that_stops_reading_is_dropped(make_settings: Callable[..., Any], g2p: Any) -> None:
    """Outbound messages never queue without bound: a send that does not complete within
    send_timeout_s ends the stream (4009) and the handler returns (its slot is freed)."""
    app = create_app(make_settings(send_timeout_s=0.3), g2p=g2p)
    with TestClient(app):
        state = app.state.openkws

        async def run() -> int:
            return await asyncio.wait_for(StreamHandler(_StuckClient(), state, "default").run(), 30)  # type: ignore[arg-type]

        t0 = time.monotonic()
        code = asyncio.run(run())
    assert code == CloseCode.SEND_TIMEOUT
    assert time.monotonic() - t0 < 30
    assert b'openkws_errors_total{code="send_timeout"} 1.0' in state.metrics.render()


def test_server_bounds_socket_buffers(make_settings: Callable[..., Any], g2p: Any) -> None:
    settings = make_settings(max_frame_bytes=65536, shutdown_timeout_s=7.5)
    cfg = make_server(create_app(settings, g2p=g2p), settings).config
    assert cfg.ws_max_size == 2 * 65536 and issubclass(
        cfg.ws, KeepaliveProtocol
    )  # one message (<= 128 KiB) waits per connection
    assert cfg.ws_per_message_deflate is False
    assert cfg.timeout_graceful_shutdown == 8
    assert cfg.host == "127.0.0.1"

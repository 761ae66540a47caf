"""Issue 14 on a real server: fast senders keep their results, every stream ends with a final
message, a silent peer is told why, and token redaction does not break uvicorn's access log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from uvicorn.logging import AccessFormatter
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from openkws.server.app import create_app
from openkws.server.run import KeepaliveProtocol, _RedactTokens, make_server
from openkws.text import G2P
from tests.service.conftest import START, serve_in_thread

FRAME = (
    np.random.default_rng(0).integers(-2000, 2000, 1 << 19, dtype=np.int16).astype("<i2").tobytes()
)  # 1 MiB
# VAD off: the case is an engine busy with every frame (the gate would drop most of this noise)
FAST = {"ws_ping_interval_s": 0.2, "ws_ping_timeout_s": 0.4, "max_pending_seconds": 1.0, "vad": "off"}


def _serve(make_settings: Callable[..., Any], g2p: G2P, protocol: type | None = None, **over: Any) -> Any:
    settings = make_settings(port=_free_port(), **over)
    server = make_server(create_app(settings, g2p=g2p), settings, log_level="warning")
    if protocol is not None:
        server.config.ws = protocol
    serve_in_thread(server, 120)
    return server, f"ws://127.0.0.1:{settings.port}/v1/stream"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fast_sender(url: str, frames: int) -> tuple[list[dict[str, Any]], int | None]:
    """Send ``frames`` 1 MiB frames as fast as the socket takes them while reading replies, then stop."""
    got: list[dict[str, Any]] = []
    async with connect(url, max_size=None, ping_interval=None, close_timeout=60) as ws:
        await ws.send(json.dumps(START))

        async def read() -> None:
            try:
                async for m in ws:
                    got.append(json.loads(m))
            except ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        try:
            for _ in range(frames):
                await ws.send(FRAME)
            await ws.send(json.dumps({"type": "stop", "version": 1}))
        except ConnectionClosed:
            pass
        await reader
        return got, ws.close_code


async def _senders(url: str, clients: int, frames: int) -> list[tuple[list[dict[str, Any]], int | None]]:
    return list(await asyncio.gather(*(_fast_sender(url, frames) for _ in range(clients))))


def test_fast_senders_keep_their_results(make_settings: Callable[..., Any], g2p: G2P) -> None:
    # Reads pause for the time the engine needs for ~32 s of audio per frame, far longer than the
    # 0.4 s pong deadline: the original case (1011 "keepalive ping timeout", no summary).
    server, url = _serve(make_settings, g2p, **FAST)
    try:
        results = asyncio.run(_senders(url, clients=3, frames=3))
    finally:
        server.should_exit = True
    for msgs, code in results:
        assert code == 1000, (code, msgs[-1:])
        assert msgs[-1]["type"] == "summary" and msgs[-1]["audio_ms"] == pytest.approx(3 * 32768.0)


def test_plain_keepalive_cut_fast_senders(make_settings: Callable[..., Any], g2p: G2P) -> None:
    """The same load on uvicorn's own protocol reproduces the issue (guards the test above)."""
    server, url = _serve(make_settings, g2p, protocol=WebSocketsSansIOProtocol, **FAST)
    try:
        results = asyncio.run(_senders(url, clients=3, frames=3))
    finally:
        server.should_exit = True
    assert any(code == 1011 for _, code in results), [c for _, c in results]


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    head = (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        if len(payload) < 126
        else bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload))
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Server frames until the connection closes (pings are read and never answered)."""
    buf, out = b"", []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:
            n, pos = buf[1] & 0x7F, 2
            if n == 126:
                n, pos = struct.unpack("!H", buf[2:4])[0], 4
            if len(buf) < pos + n:
                break
            out.append((buf[0] & 0x0F, buf[pos : pos + n]))
            buf = buf[pos + n :]
    return out


def test_silent_peer_gets_a_final_message(make_settings: Callable[..., Any], g2p: G2P) -> None:
    server, url = _serve(make_settings, g2p, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.5)
    port = int(url.split(":")[2].split("/")[0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert b" 101 " in head
            sock.sendall(_ws_frame(0x1, json.dumps(START).encode()))
            frames = _read_frames(sock)  # a peer that never answers pings while the server reads
    finally:
        server.should_exit = True
    texts = [json.loads(p) for op, p in frames if op == 0x1]
    closes = [struct.unpack("!H", p[:2])[0] for op, p in frames if op == 0x8]
    assert texts[0]["type"] == "ready"
    assert (
        texts[-1]["type"] == "error"
        and texts[-1]["code"] == "keepalive_timeout"
        and texts[-1]["close_code"] == 4011
    )
    assert closes == [4011]  # never 1011, which the docs reserve for server bugs


def test_redacted_access_line_is_still_formatted(capsys: pytest.CaptureFixture[str]) -> None:
    # uvicorn's access formatter unpacks record.args: `args = None` gave 103 "--- Logging error ---"
    # lines per request and lost the access line.
    logger = logging.getLogger("test.uvicorn.access")
    handler = logging.StreamHandler()
    handler.setFormatter(
        AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    )
    logger.addHandler(handler)
    logger.addFilter(_RedactTokens())
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", "/healthz?token=s3cr3t-key", "1.1", 401
        )
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "s3cr3t" not in err
    assert '"GET /healthz?token=<redacted> HTTP/1.1" 401' in err


def test_server_runs_the_keepalive_protocol(make_settings: Callable[..., Any], g2p: G2P) -> None:
    settings = make_settings()
    assert issubclass(make_server(create_app(settings, g2p=g2p), settings).config.ws, KeepaliveProtocol)

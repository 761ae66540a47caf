"""Issue 25, websocket door: a client that floods pings and never reads is closed by the
control-frame budget, before auth and after, and the server's memory stays flat (real uvicorn)."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench._server import ServerProcess
from bench.probe_doors import MIB, RssSampler, masked_frame, ping_flood, rss_bytes, upgrade_request
from openkws.protocol import CloseCode
from openkws.server.app import create_app
from openkws.server.run import make_server
from openkws.server.ws_bounds import BUDGET_ERROR, control_frame_cost
from openkws.text import G2P
from tests.reliability.test_fast_senders import _free_port, _read_frames
from tests.service.conftest import START, serve_in_thread

FLOOD = 200 * MIB  # the flood: RSS grew by 190-285 MB
RSS_BOUND = 60 * 1000 * 1000  # generous: the budget lets ~64 KiB through


@pytest.mark.parametrize("auth", ["on", "off"])
def test_ping_flood_that_never_reads_is_closed_with_memory_bounded(
    auth: str, model_dir: Path, tmp_path: Path
) -> None:
    srv = ServerProcess(model_dir, tmp_path / "data", tmp_path / "server.log", env={"OPENKWS_AUTH": auth})
    srv.start()
    start = masked_frame(0x1, json.dumps(START).encode())
    results = []
    try:
        srv.wait_ready(timeout=900)  # slow starts on a loaded machine
        # auth on: no key at all (refused, then flooding while closing); auth off: before and after start
        for first in [b""] if auth == "on" else [b"", start]:
            before = rss_bytes(srv.pid)
            with RssSampler(srv.pid) as rss:
                flood = ping_flood(srv.port, FLOOD, first=first)
            time.sleep(1.0)
            results.append((flood, before, rss.peak, rss_bytes(srv.pid)))
        log = srv.log_tail(20_000)
    finally:
        srv.terminate()
    for flood, before, peak, after in results:
        assert flood.closed, f"the server did not end the flood: {flood}"
        assert flood.sent < FLOOD // 10, flood  # closed long before the 200 MiB
        assert peak - before < RSS_BOUND, (before, peak, after)
        assert after - before < RSS_BOUND, (before, peak, after)
    assert log.count("bytes of websocket control frames") == len(results), log


def test_over_budget_reader_gets_pongs_then_error_and_1008(
    make_settings: Callable[..., Any], g2p: G2P
) -> None:
    """A client that reads sees its pongs while within the budget, then the reason and close 1008."""
    budget = 2048
    settings = make_settings(
        port=_free_port(), ws_control_budget_bytes=budget, ws_control_refill_bytes_per_s=1.0
    )
    server = make_server(create_app(settings, g2p=g2p), settings, log_level="warning")
    serve_in_thread(server, 120)
    ping = b"p" * 125
    try:
        with socket.create_connection(("127.0.0.1", settings.port), timeout=15) as sock:
            sock.sendall(upgrade_request(settings.port))
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert b" 101 " in head
            sock.sendall(masked_frame(0x9, ping) * 20)  # 20 x 131 bytes > 2048
            frames = _read_frames(sock)
    finally:
        server.should_exit = True
    pongs = [p for op, p in frames if op == 0xA]
    texts = [json.loads(p) for op, p in frames if op == 0x1]
    closes = [struct.unpack("!H", p[:2])[0] for op, p in frames if op == 0x8]
    assert len(pongs) == budget // control_frame_cost(ping) and all(p == ping for p in pongs)
    assert texts[-1]["type"] == "error" and texts[-1]["code"] == BUDGET_ERROR
    assert texts[-1]["close_code"] == CloseCode.POLICY_VIOLATION == 1008
    assert "2048 bytes" in texts[-1]["message"]
    assert closes == [1008]


def test_keepalive_pongs_within_budget_keep_a_stream_open(
    make_settings: Callable[..., Any], g2p: G2P
) -> None:
    """A client answering the server's pings and pinging itself now and then (what the websockets
    client does) is never charged over the budget: ~10 bytes per ping against a 1 KiB/s refill."""
    settings = make_settings(port=_free_port(), ws_ping_interval_s=0.05, ws_ping_timeout_s=5.0)
    server = make_server(create_app(settings, g2p=g2p), settings, log_level="warning")
    serve_in_thread(server, 120)
    from websockets.sync.client import connect

    try:
        with connect(f"ws://127.0.0.1:{settings.port}/v1/stream", ping_interval=0.05) as ws:
            ws.send(json.dumps(START))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            time.sleep(3.0)  # ~60 server pings and ~60 client pings
            ws.send(json.dumps({"type": "stop", "version": 1}))
            summary = json.loads(ws.recv(timeout=30))
    finally:
        server.should_exit = True
    assert summary["type"] == "summary"

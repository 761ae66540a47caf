"""CLI tests: a real uvicorn server on 127.0.0.1 with the packaged model (no torch needed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from openkws.server.app import create_app
from openkws.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    settings = Settings(data_dir=data_dir, device="cpu", inference_workers=1, port=port)
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while not srv.started:
        if time.monotonic() > deadline or not t.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv, t


@pytest.fixture()
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh server (empty keyword database) per test."""
    url, srv, t = start_server(tmp_path_factory.mktemp("srv"))
    yield url
    srv.should_exit = True
    t.join(timeout=30)

"""Issue 25, metrics door: ``OPENKWS_METRICS_AUTH=on`` with auth off is a promise the server cannot
keep (there are no keys to check), so it refuses to start and says how to fix the settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench._server import ServerProcess
from openkws.server.app import StartupRefused, create_app
from openkws.text import G2P

FIX = "OPENKWS_METRICS_AUTH=on needs OPENKWS_AUTH=on"


def test_app_refuses_metrics_auth_without_auth(make_settings: Callable[..., Any], g2p: G2P) -> None:
    app = create_app(make_settings(auth=False, metrics_auth=True), g2p=g2p)
    with pytest.raises(StartupRefused, match=FIX), TestClient(app):
        pass


def test_metrics_auth_with_auth_on_starts_and_guards_metrics(make_client: Callable[..., TestClient]) -> None:
    c = make_client(auth=True, metrics_auth=True)
    assert c.get("/metrics").status_code == 401


def test_serve_exits_with_the_fix_and_never_listens(model_dir: Path, tmp_path: Path) -> None:
    srv = ServerProcess(
        model_dir,
        tmp_path / "data",
        tmp_path / "server.log",
        env={"OPENKWS_AUTH": "off", "OPENKWS_METRICS_AUTH": "on"},
        log_level="info",
    )
    srv.start()
    assert srv.proc is not None
    code = srv.proc.wait(timeout=600)
    log = srv.log_tail(20_000)
    assert code != 0, log
    assert "openkws refuses to start: " + FIX in log
    assert "Uvicorn running" not in log

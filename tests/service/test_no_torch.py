"""The service runtime never imports torch; only the CLI touches the (torch-free) training CLI modules."""

from __future__ import annotations

import subprocess
import sys

SERVICE = """
import sys
import openkws.server.app, openkws.client, openkws.engine.spotter, openkws.keywords.registry, openkws.keywords.store
from openkws.server.app import create_app
from openkws.settings import Settings
create_app(Settings())  # building the app loads nothing yet
print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training'))))
"""
CLI = """
import sys
import openkws.cli
print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))
"""


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


def test_service_imports_no_torch_nor_training() -> None:
    assert _run(SERVICE) == ""


def test_cli_imports_no_torch() -> None:
    assert _run(CLI) == ""

"""Every user mistake the CLI can meet is one line on stderr saying what to do, never a traceback.

The console script runs as a subprocess here (what a user sees), except where noted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from openkws.cli import app
from tests.cli.conftest import free_port


def openkws(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENKWS_URL": "", "PYTHONWARNINGS": "ignore"}
    env.pop("OPENKWS_URL")
    return subprocess.run(
        [sys.executable, "-c", "from openkws.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("a") / "tone.wav"
    sf.write(p, (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    return p


def test_server_not_running(wav: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["detect", str(wav)],
        ["keywords", "add", "hey jarvis"],
        ["keywords", "list"],
        ["keywords", "set", "1", "--threshold", "0.5"],
        ["stream", str(wav), "--no-realtime"],
    ):
        line = one_error_line(openkws(*args, "--url", url))
        assert f"cannot reach an openkws server at {url}" in line and "openkws serve" in line, (args, line)


def test_url_without_scheme(wav: Path) -> None:
    for args in (["detect", str(wav)], ["keywords", "list"], ["stream", str(wav)]):
        line = one_error_line(openkws(*args, "--url", "127.0.0.1:8200"))
        assert "has no scheme; use http://127.0.0.1:8200" in line, line
    assert "use http:// or https://" in one_error_line(openkws("keywords", "list", "--url", "ftp://host:1"))


def test_unreadable_or_unsupported_audio(tmp_path: Path) -> None:
    txt = tmp_path / "notaudio.txt"
    txt.write_text("hello")
    line = one_error_line(openkws("detect", str(txt)))
    assert "notaudio.txt is not a WAV, FLAC or OGG (Vorbis or Opus) file" in line and "ffmpeg" in line
    assert "BytesIO" not in line
    assert "No such file" in one_error_line(openkws("detect", str(tmp_path / "missing.wav")))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "is empty" in one_error_line(openkws("stream", str(empty)))


def test_bad_keyword_files(tmp_path: Path) -> None:
    bad = tmp_path / "kw.yaml"
    bad.write_text("- text: hey jarvis\n  treshold: 0.5\n")
    assert "unknown field 'treshold'" in one_error_line(openkws("keywords", "import", str(bad)))
    assert "use .yaml, .yml or .csv" in one_error_line(
        openkws("keywords", "import", str(tmp_path / "kw.json"))
    )
    csv = tmp_path / "kw.csv"
    csv.write_text("text,threshold\nhey jarvis,high\n")
    assert "threshold 'high' is not a number" in one_error_line(openkws("keywords", "import", str(csv)))


def test_server_side_errors_are_one_line(server: str) -> None:
    r = CliRunner().invoke(app, ["keywords", "set", "99", "--threshold", "0.5", "--url", server])
    assert r.exit_code == 1 and "keyword 99 not found" in r.output
    r = CliRunner().invoke(app, ["keywords", "add", "xkcd", "--phonemes", "EH QQ", "--url", server])
    assert r.exit_code == 1 and "'QQ' is not in the model's inventory" in r.output
    r = CliRunner().invoke(app, ["keywords", "set", "1", "--url", server])
    assert r.exit_code == 2 and "exactly one of --threshold or --sensitivity" in r.output

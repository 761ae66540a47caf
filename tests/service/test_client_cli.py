"""The Python client and the `openkws` CLI against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from openkws.cli import app as cli_app
from openkws.client import OpenKWSClient, OpenKWSError, StreamClosed
from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text import G2P
from tests.service.conftest import KEYWORDS, serve_in_thread, wav_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory, g2p: G2P) -> Iterator[str]:
    port = _free_port()
    settings = Settings(
        model_dir=model_dir,
        data_dir=tmp_path_factory.mktemp("srv"),
        device="cpu",
        inference_workers=1,
        port=port,
    )
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, g2p=g2p),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws_max_size=4 * settings.max_frame_bytes,
        )
    )
    t = serve_in_thread(srv, 60)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=30)


@pytest.fixture(scope="module")
def wav_file(tmp_path_factory: pytest.TempPathFactory, speech: np.ndarray) -> Path:
    p = tmp_path_factory.mktemp("audio") / "speech.wav"
    p.write_bytes(wav_bytes(speech))
    return p


def test_client_round_trip(server: str, wav_file: Path, calibrated_threshold: float) -> None:
    with OpenKWSClient(server) as c:
        assert c.health()["status"] == "ready"
        kw = c.add_keyword("hey jarvis", threshold=calibrated_threshold, metadata={"by": "test"})
        assert kw["created"] and kw["metadata"] == {"by": "test"}
        more = c.add_keywords(list(KEYWORDS[1:]), threshold=calibrated_threshold)
        assert len(more) == len(KEYWORDS) - 1
        assert [k["text"] for k in c.list_keywords(limit=2)] == list(KEYWORDS)
        assert c.set_threshold(kw["id"], calibrated_threshold)["threshold"] == pytest.approx(
            calibrated_threshold
        )
        with pytest.raises(OpenKWSError) as e:
            c.add_keyword("日本語")
        assert e.value.status == 422 and e.value.code == "invalid_keyword_text"
        offline = c.detect(wav_file)
        events = list(c.stream_file(wav_file, chunk_ms=100))
        assert events[0]["type"] == "ready" and events[-1]["type"] == "summary"
        streamed = [e for e in events if e["type"] == "detection"]
        assert [(d["keyword_id"], d["start_ms"]) for d in streamed] == [
            (d["keyword_id"], d["start_ms"]) for d in offline["detections"]
        ]
        with pytest.raises(StreamClosed) as closed:
            list(c.stream_chunks(iter([b"\x00\x00"]), sample_rate=7000))
        assert closed.value.code == 4003
        for k in c.list_keywords():
            if k["text"] != "hey jarvis":
                c.delete_keyword(k["id"])
        assert [k["text"] for k in c.list_keywords()] == ["hey jarvis"]


def test_cli_commands(server: str, wav_file: Path) -> None:
    runner = CliRunner()
    env = {"OPENKWS_URL": server}
    r = runner.invoke(cli_app, ["keywords", "add", "okay computer", "--threshold", "0.4"], env=env)
    assert r.exit_code == 0, r.output
    assert "okay computer" in r.output and "O K" not in r.output
    kid = int(r.output.split()[0])
    r = runner.invoke(cli_app, ["keywords", "list", "--json"], env=env)
    assert r.exit_code == 0 and any(k["id"] == kid for k in json.loads(r.output))
    r = runner.invoke(cli_app, ["detect", str(wav_file), "--json"], env=env)
    assert r.exit_code == 0 and "detections" in json.loads(r.output)
    r = runner.invoke(
        cli_app, ["stream", str(wav_file), "--no-realtime", "--json", "--chunk-ms", "200"], env=env
    )
    assert r.exit_code == 0, r.output
    kinds = [json.loads(line)["type"] for line in r.output.splitlines() if line.startswith("{")]
    assert kinds[0] == "ready" and kinds[-1] == "summary"
    r = runner.invoke(cli_app, ["keywords", "rm", str(kid)], env=env)
    assert r.exit_code == 0 and f"deleted {kid}" in r.output
    r = runner.invoke(cli_app, ["keywords", "rm", str(kid)], env=env)
    assert r.exit_code == 1 and "not found" in r.output
    r = runner.invoke(cli_app, ["keywords", "add", "!!!"], env=env)
    assert r.exit_code == 1 and "no pronounceable words" in r.output
    r = runner.invoke(cli_app, ["keywords", "add", "hey travis", "--proxy", "tts"], env=env)
    assert r.exit_code == 0 and "proxy=tts" in r.output, r.output
    r = runner.invoke(cli_app, ["keywords", "add", "hey travis", "--proxy", "audio"], env=env)
    assert r.exit_code == 2 and "audio" in r.output
    with OpenKWSClient(server) as c:
        assert [k["proxy"] for k in c.add_keywords(["red light", "green light"], proxy="both")] == [
            "both",
            "both",
        ]
    r = runner.invoke(cli_app, ["stream"], env=env)
    assert r.exit_code == 2 and "exactly one of FILE or --mic" in r.output


def test_cli_unreachable_server(tmp_path: Path, wav_file: Path) -> None:
    r = CliRunner().invoke(cli_app, ["stream", str(wav_file), "--url", "http://127.0.0.1:9", "--no-realtime"])
    assert r.exit_code == 1 and "cannot reach" in r.output

"""Issue 23 against a real server: the REST score trace, `openkws detect --plot`, and the small
first-five-minutes errors (a 2,000-character keyword, `train run` without torch, `stream` with no
server, `keywords import` warnings, `wyoming` finding `serve`'s keywords)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from openkws import KeywordSpotter
from openkws.cli import app
from openkws.client import OpenKWSClient
from tests.cli.conftest import free_port, start_server

SR = 16_000
THRESHOLD = 0.6  # a raw threshold, so that the library and the server use the same one


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, server, t = start_server(tmp_path_factory.mktemp("srv"))
    yield url
    server.should_exit = True
    t.join(timeout=30)


@pytest.fixture(scope="module")
def lib() -> KeywordSpotter:
    return KeywordSpotter()


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from openkws.text.tts import ProxyTTS

    speech = ProxyTTS().synthesize("hey jarvis, what time is it", "espeak:en-us+m3")
    pad = np.zeros(SR // 2, np.float32)
    p = tmp_path_factory.mktemp("audio") / "hey.wav"
    sf.write(p, np.concatenate([pad, speech, pad]), SR, subtype="PCM_16")
    return p


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_rest_trace_is_the_library_trace(srv: str, wav: Path, lib: KeywordSpotter) -> None:
    with OpenKWSClient(srv) as c:
        c.add_keyword("hey jarvis", threshold=THRESHOLD)
        c.add_keyword("turn on the lights", threshold=THRESHOLD)
        res = c.detect(wav, trace=True)
        assert c.detect(wav)["trace"] is None  # only when asked
    kws = KeywordSpotter(spotter=lib.spotter, tenant="rest-twin")
    kws.add_keyword("hey jarvis", threshold=THRESHOLD)
    kws.add_keyword("turn on the lights", threshold=THRESHOLD)
    lib = kws.detect_file(wav, trace=True)
    tr = res["trace"]
    np.testing.assert_allclose(tr["times_ms"], lib.times_ms, atol=0.1)
    assert [k["text"] for k in tr["keywords"]] == [k.text for k in lib.keywords]
    for rest_k, lib_k in zip(tr["keywords"], lib.keywords, strict=True):
        assert rest_k["threshold"] == pytest.approx(lib_k.threshold, abs=1e-6)
        np.testing.assert_allclose(rest_k["scores"], lib_k.scores, atol=2e-3)
    assert [d["text"] for d in res["detections"]] == [d.text for d in lib.detections] == ["hey jarvis"]


def test_detect_plot_writes_a_png(srv: str, wav: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the plot/bench/train extras")
    with OpenKWSClient(srv) as c:
        c.add_keyword("hey jarvis", threshold=THRESHOLD)
    out = tmp_path / "scores.png"
    r = CliRunner().invoke(app, ["detect", str(wav), "--plot", str(out), "--url", srv])
    assert r.exit_code == 0, r.output
    assert "'hey jarvis'" in r.output and f"plot written to {out}" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "message"), [("scores.txt", "give a .png file name"), ("nowhere/scores.png", "does not exist")]
)
def test_detect_plot_bad_target_fails_before_upload(
    wav: Path, tmp_path: Path, name: str, message: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the check comes first
    r = CliRunner().invoke(app, ["detect", str(wav), "--plot", str(tmp_path / name), "--url", url])
    assert r.exit_code == 2 and message in r.output, r.output


def test_plot_without_matplotlib_names_the_extra(wav: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from openkws.cli import main; sys.argv = ['openkws', *sys.argv[1:]]; main()"
    )
    r = _python(code, "detect", str(wav), "--plot", str(tmp_path / "s.png"), "--url", "http://127.0.0.1:9")
    assert r.returncode == 1, r.stderr
    assert "pip install 'openkws[plot]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_train_run_without_torch_names_the_train_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from openkws.cli import main; sys.argv = ['openkws', 'train', 'run', '--config', 'smoke']; main()"
    )
    r = _python(code)
    assert r.returncode == 1, r.stderr
    assert "needs torch" in r.stderr and "pip install 'openkws[train]'" in r.stderr, r.stderr
    assert "unexpected" not in r.stderr and "report it" not in r.stderr, r.stderr


def test_stream_without_a_server_is_one_readable_line(wav: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(app, ["stream", str(wav), "--url", url])
    assert r.exit_code == 1
    assert r.output.startswith(f"error: cannot reach an openkws server at {url}"), r.output
    assert "server_unreachable" not in r.output and r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("n", [300, 2000])
def test_long_keyword_is_a_short_error_with_one_limit(srv: str, lib: KeywordSpotter, n: int) -> None:
    from openkws.text import G2PError
    from openkws.text.g2p import MAX_CHARS

    text = "a" * n
    r = CliRunner().invoke(app, ["keywords", "add", text, "--url", srv])
    assert r.exit_code == 1 and len(r.output) < 200, r.output
    assert f"{n} characters; at most {MAX_CHARS} are accepted" in r.output and text not in r.output
    with pytest.raises(G2PError, match=f"at most {MAX_CHARS} are accepted") as e:  # the library: same words
        lib.add_keyword(text)
    assert len(str(e.value)) < 200


def test_import_warning_states_the_new_thresholds_rate(srv: str, tmp_path: Path) -> None:
    run = CliRunner()
    r = run.invoke(app, ["keywords", "add", "stop", "--threshold", "0.3", "--url", srv])
    assert r.exit_code == 0 and "warning:" in r.output, r.output  # short, and fires often at 0.3
    f = tmp_path / "k.yaml"
    f.write_text("- text: stop\n  threshold: 0.8\n")
    r = run.invoke(app, ["keywords", "import", str(f), "--url", srv])
    assert r.exit_code == 0 and "threshold 0.3 -> 0.8" in r.output, r.output
    with OpenKWSClient(srv) as c:
        kw = next(k for k in c.list_keywords() if k["text"] == "stop")
        new = c.get_keyword(kw["id"])
    rate = new["expected_fa_per_hour"]
    assert isinstance(rate, float)
    warnings = [line for line in r.output.splitlines() if "warning:" in line]
    assert warnings and all(
        "false alarms per hour" not in w or f"expected {rate:.2g} " in w for w in warnings
    ), r.output
    assert new["warnings"] and all(w.split("warning: ")[-1] in new["warnings"] for w in warnings)


def test_wyoming_defaults_to_the_servers_keyword_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`openkws serve` and `openkws wyoming` without --data-dir read the same keywords."""
    from openkws.settings import Settings
    from openkws.wyoming import WakeService, WyomingConfig

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("OPENKWS_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENKWS_DATABASE_URL", raising=False)
    assert Settings().data_dir == tmp_path / "openkws"  # what `openkws serve` uses without flags
    from fastapi.testclient import TestClient

    from openkws.server.app import create_app

    # the server as `openkws serve` builds it with no data flags (only CPU knobs for the test)
    with TestClient(create_app(Settings(device="cpu", inference_workers=1))) as c:
        assert c.post("/v1/keywords", json={"text": "okay computer"}).status_code == 201
    assert WakeService.load(WyomingConfig()).keyword_texts() == ["okay computer"]

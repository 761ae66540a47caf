"""`openkws listen`: the meter/detection loop on real speech, and the error without a microphone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from openkws.cli import app
from openkws.cli.listen import ListenError, level_meter, microphone, run
from openkws.kws import KeywordSpotter


def test_loop_prints_meter_and_detection(say: Callable[..., np.ndarray]) -> None:
    kws = KeywordSpotter()
    kws.add_keyword("hey jarvis")
    audio = (say("hey jarvis") * 32767).astype(np.int16)
    out: list[str] = []
    blocks = (audio[i : i + 1600] for i in range(0, len(audio), 1600))
    found = run(kws.create_stream(sample_rate=16_000), blocks, out.append)
    assert [d.text for d in found] == ["hey jarvis"]
    text = "".join(out)
    assert "detected 'hey jarvis'" in text and "dBFS" in text
    assert level_meter(np.zeros(1600, np.int16)).endswith("-60 dBFS")


def _has_input_device() -> bool:
    try:
        microphone(None, 0.1)
    except ListenError:
        return False
    return True


@pytest.mark.skipif(_has_input_device(), reason="this machine has a microphone")
def test_no_microphone_is_one_clear_line() -> None:
    with pytest.raises(ListenError) as e:
        microphone(None, 1.0)
    assert any(s in str(e.value) for s in ("libportaudio2", "plug in a microphone", "openkws[mic]"))
    r = CliRunner().invoke(app, ["listen", "hey jarvis", "--seconds", "1"])
    assert r.exit_code == 1 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output

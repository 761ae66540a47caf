"""One default, one vocabulary (issue 23): the library and the server, both at default settings,
give the same five keywords the same thresholds, and find the same detections in one file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from openkws import KeywordSpotter
from openkws.server.app import create_app
from openkws.settings import Settings, packaged_model_dir

SR = 16_000
TEXTS = ("hey jarvis", "computer", "turn on the lights", "stop", "play music")


def test_library_and_server_agree_at_default_settings(tmp_path: Path) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from openkws.text.tts import ProxyTTS

    tts = ProxyTTS()
    gap = np.zeros(SR // 2, np.float32)
    parts = [gap]
    for t in TEXTS:  # each keyword by two voices, the first right at the start of the file
        parts += [tts.synthesize(t, "espeak:en-us+m3"), gap, tts.synthesize(t, "flite:slt"), gap]
    wav = tmp_path / "five.wav"
    sf.write(wav, np.concatenate(parts[1:]), SR, subtype="PCM_16")

    kws = KeywordSpotter()  # the expected hit rate does not change thresholds or detections
    lib = [kws.add_keyword(t, hit_rate=False) for t in TEXTS]
    lib_det = [(d.text, d.score, d.start_ms, d.end_ms) for d in kws.detect_file(wav)]

    settings = Settings(model_dir=packaged_model_dir(), data_dir=tmp_path / "data", device="cpu",
                        enroll_hit_rate=False)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/keywords/batch", json={"keywords": [{"text": t} for t in TEXTS]})
        assert r.status_code == 200, r.text
        srv = r.json()["keywords"]
        with wav.open("rb") as f:
            r = c.post("/v1/detect", files={"file": ("five.wav", f, "audio/wav")})
        assert r.status_code == 200, r.text
        srv_det = [(d["text"], d["score"], d["start_ms"], d["end_ms"]) for d in r.json()["detections"]]

    assert [k["threshold"] for k in srv] == [k.threshold for k in lib]
    assert [k["expected_fa_per_hour"] for k in srv] == [k.expected_fa_per_hour for k in lib]
    assert len({k.threshold for k in lib}) > 1  # per-keyword thresholds from the bank, not one default
    assert [(t, a, b) for t, _, a, b in srv_det] == [(t, a, b) for t, _, a, b in lib_det]
    assert [s for _, s, *_ in srv_det] == pytest.approx(
        [s for _, s, *_ in lib_det], abs=1e-4
    )  # float rounding
    assert {t for t, *_ in lib_det} >= {"hey jarvis"}, lib_det

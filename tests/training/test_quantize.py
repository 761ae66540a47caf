"""openkws.training.quantize: an int8 variant is a loadable model directory with the same contract,
and bad requests fail with a message that says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openkws.engine.calibration import BANK_FILE
from openkws.engine.spotter import Spotter
from openkws.engine.whitening import WHITENING_FILE
from openkws.training.quantize import quantize_model

DEFAULT = Path(__file__).resolve().parents[2] / "src" / "openkws" / "models" / "default"


@pytest.fixture(scope="module")
def model() -> Path:
    if not (DEFAULT / "model.json").is_file():
        pytest.skip("no model in models/default")
    return DEFAULT


def test_dynamic_variant_loads_and_scores_close(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    res = quantize_model(model, out, ("acoustic_pool",), "dynamic", None)
    assert res["sizes"]["acoustic_pool"]["int8_bytes"] < res["sizes"]["acoustic_pool"]["float_bytes"]
    spec = json.loads((out / "model.json").read_text())
    assert spec["quantization"]["roles"] == ["acoustic_pool"]
    # the float graphs' bank and whitening would not fit the variant: left out, and the card says so
    assert res["dropped"] == [BANK_FILE, WHITENING_FILE] and "whitening" not in spec["files"]
    assert not (out / BANK_FILE).exists() and not (out / WHITENING_FILE).exists()
    assert "openkws eval bank --model" in (out / "MODEL_CARD.md").read_text()
    f, q = Spotter.load(model, device="cpu"), Spotter.load(out, device="cpu")  # hashes + contract checked
    audio = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    a, b = f.acoustic_proxies([audio]), q.acoustic_proxies([audio])  # plain: only f has a whitening
    assert float(a @ b) > 0.95
    assert f.acoustic_fingerprint != q.acoustic_fingerprint  # stored acoustic proxies do not carry over


def test_bad_requests(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot quantise"):
        quantize_model(model, tmp_path / "a", ("text",), "dynamic", None)
    with pytest.raises(ValueError, match="needs --manifest"):
        quantize_model(model, tmp_path / "b", ("speech_embedding",), "static", None)
    with pytest.raises(ValueError, match="must differ"):
        quantize_model(model, model, ("speech_embedding",), "dynamic", None)
    with pytest.raises(ValueError, match="'static' or 'dynamic'"):
        quantize_model(model, tmp_path / "c", ("speech_embedding",), "fp8", None)

"""Sensitivity in false alarms per hour: calibration maths, and enrollment / PATCH over REST with a bank.

The bank in the REST tests holds real window embeddings of the untrained test model (its own
``acoustic_frames``/``acoustic_pool`` over synthesized speech and noise), written by the same
builder ``openkws export`` uses.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.engine.calibration import BANK_FILE, CalibrationError, Calibrator, Peaks
from openkws.keywords.sensitivity import MIN_PHONES, Sensitivity
from openkws.text.phonetics import one_word_apart


def _bank(n: int = 600, dim: int = 16, seed: int = 0) -> Calibrator:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, 3, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return Calibrator(
        emb, np.repeat(np.arange(n // 100), 100), np.tile(np.arange(100) * 4, n // 100), 0.2, 12
    )


def test_threshold_is_monotonic_in_the_target_and_inverts_the_rate() -> None:
    cal = _bank()
    proxy = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    proxy /= np.linalg.norm(proxy)
    targets = [0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]
    thr = [cal.threshold_for(proxy, t) for t in targets]
    assert all(a > b for a, b in zip(thr, thr[1:], strict=False)), thr  # stricter for fewer false alarms
    for t, th in zip(targets, thr, strict=True):
        got = cal.expected_fa_per_hour(proxy, th)
        assert got <= t * 1.0001, (t, th, got)
        if t * cal.hours > 25:  # measured range: the next peak down would exceed the target
            assert cal.expected_fa_per_hour(proxy, th - 1e-3) > t * 0.5
    rates = [cal.expected_fa_per_hour(proxy, x) for x in np.linspace(-0.2, 1.0, 40)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_tail_extrapolation_below_the_measured_range() -> None:
    peaks = Peaks(np.linspace(0.8, 0.4, 60), hours=1.0)
    t = peaks.threshold(0.5)  # 20 peaks per hour measured -> extrapolated beyond the top one
    assert 0.8 < t < 0.99 and peaks.rate(t) == pytest.approx(0.5, rel=1e-6)


def test_bad_targets_and_banks_raise() -> None:
    cal = _bank()
    with pytest.raises(CalibrationError, match="> 0"):
        cal.threshold_for(cal.embeddings[0, 0], 0.0)
    with pytest.raises(CalibrationError, match="disagree"):
        Calibrator(np.zeros((3, 2, 4)), np.zeros(2), np.zeros(3), 1.0, 10)
    with pytest.raises(CalibrationError, match="> 0"):
        Sensitivity(None, 0.6, default_target=-1)


def test_without_a_bank_thresholds_fall_back_and_no_rate_is_claimed(tmp_path: Path) -> None:
    s = Sensitivity(None, 0.61)
    assert s.threshold(np.ones(4), 1.0) == 0.61 and s.expected_fa_per_hour(np.ones(4), 0.5) is None
    assert Calibrator.load(tmp_path, 16, 12) is None


def test_warnings_for_short_and_one_word_apart_keywords() -> None:
    s = Sensitivity(None, 0.6)
    w = s.warnings(("S", "T", "AA", "P"), 3.2)
    assert len(w) == 1 and "short keyword: 4 phones" in w[0] and "3.2 false alarms per hour" in w[0]
    assert s.warnings(tuple("ABCDEFG"), 0.1) == []
    assert (
        "fires" not in " ".join(s.warnings(tuple("ABCDEFG"), 9.0))
        and "9 false alarms" in s.warnings(tuple("ABCDEFG"), 9.0)[0]
    )
    assert MIN_PHONES == 6
    from openkws.text import G2P

    g2p = G2P()

    def apart(a: str, b: str) -> bool:
        return one_word_apart(g2p(a).phonemes, g2p(b).phonemes)

    assert apart("turn on the lights", "turn off the lights") and apart("play music", "play the music")
    assert not apart("play music", "play music") and not apart("stop", "go")
    assert not apart("turn on the lights", "turn off all lights")  # two words differ
    assert not apart(
        "hey jarvis", "hey travis"
    )  # the shared word is the smaller part: left to the cosine rule


@pytest.fixture(scope="module")
def banked_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from openkws.training.calibration_bank import build_bank

    out = tmp_path_factory.mktemp("banked") / "model"
    shutil.copytree(model_dir, out)
    build_bank(out, tts_s=20.0, noise_s=10.0, music_s=10.0, stride=2)
    return out


def test_enroll_with_target_sets_threshold_and_reports_expected_rate(
    banked_model: Path, make_client: Callable[..., TestClient]
) -> None:
    assert (banked_model / BANK_FILE).stat().st_size < 2 * 2**20
    c = make_client(model_dir=banked_model)
    strict = c.post("/v1/keywords", json={"text": "turn on the lights", "target_fa_per_hour": 0.1}).json()
    assert strict["expected_fa_per_hour"] == pytest.approx(0.1, rel=0.02)
    loose = c.post("/v1/keywords", json={"text": "turn off the lights", "target_fa_per_hour": 50.0}).json()
    assert loose["expected_fa_per_hour"] <= 50.0 * 1.001
    assert [x["reason"] for x in loose["confusable_with"]] == ["one_word"]
    assert any("turn on the lights" in w for w in loose["warnings"])
    default = c.post("/v1/keywords", json={"text": "computer"}).json()  # default sensitivity 0.5 FA/h
    assert default["expected_fa_per_hour"] == pytest.approx(0.5, rel=0.02)
    short = c.post("/v1/keywords", json={"text": "stop", "threshold": 0.3}).json()
    assert short["threshold"] == pytest.approx(0.3)  # a raw threshold overrides the sensitivity
    assert any(w.startswith("short keyword") for w in short["warnings"])
    kid = strict["id"]
    r = c.patch(f"/v1/keywords/{kid}", json={"target_fa_per_hour": 20.0})
    assert r.status_code == 200 and r.json()["threshold"] < strict["threshold"]
    got = c.get(f"/v1/keywords/{kid}").json()
    assert got["threshold"] == r.json()["threshold"] and got["expected_fa_per_hour"] <= 20.0 * 1.001
    listed = {k["id"]: k for k in c.get("/v1/keywords").json()["items"]}
    assert listed[kid]["expected_fa_per_hour"] == got["expected_fa_per_hour"]


def test_patch_needs_exactly_one_of_threshold_and_target(
    banked_model: Path, make_client: Callable[..., TestClient]
) -> None:
    c = make_client(model_dir=banked_model)
    kid = c.post("/v1/keywords", json={"text": "hello there"}).json()["id"]
    for body in ({}, {"threshold": 0.5, "target_fa_per_hour": 1.0}, {"target_fa_per_hour": 0}):
        assert c.patch(f"/v1/keywords/{kid}", json=body).status_code == 422, body
    assert c.post("/v1/keywords", json={"text": "x ray", "target_fa_per_hour": -1}).status_code == 422


def test_target_without_a_bank_is_a_clear_409(client: TestClient) -> None:
    kw = client.post("/v1/keywords", json={"text": "hey jarvis"}).json()
    assert kw["expected_fa_per_hour"] is None and kw["threshold"] == pytest.approx(0.5)
    r = client.patch(f"/v1/keywords/{kw['id']}", json={"target_fa_per_hour": 1.0})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_calibration_bank"
    assert "openkws eval bank" in r.json()["error"]["message"]
    r = client.post("/v1/keywords", json={"text": "okay nova", "target_fa_per_hour": 1.0})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_calibration_bank"
    assert client.get("/v1/keywords").json()["total"] == 1  # nothing enrolled by the refused request

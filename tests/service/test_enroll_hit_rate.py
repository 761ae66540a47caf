"""The expected hit rate at enrollment (issue 23): REST response fields, the low-rate warning, and
the renditions of ``proxy: tts`` reused rather than synthesized twice. Real espeak-ng and flite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openkws.engine.hit_rate import SPEEDS, hit_rate, pink_noise, variants
from openkws.engine.spotter import Spotter
from openkws.keywords.registry import EnrollItem, KeywordRegistry
from openkws.keywords.sensitivity import Sensitivity
from openkws.keywords.store import KeywordStore
from openkws.text.tts import PROXY_VOICES, ProxyTTS
from tests.service.test_trained_model import trained_model  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def engines() -> None:
    missing = ProxyTTS().missing()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make setup installs them)")


@dataclass(frozen=True)
class CountingTTS(ProxyTTS):
    """The real synthesizer, counting how often each text is rendered."""

    calls: list[str] = field(default_factory=list)

    def renditions(self, text: str, voices: tuple[str, ...] = PROXY_VOICES) -> list[np.ndarray]:  # type: ignore[override]
        self.calls.append(text)
        return super().renditions(text, voices)


def test_variants_and_hit_rate() -> None:
    rng = np.random.default_rng(0)
    w = (0.3 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    vs = variants([w, w[:8000]])
    assert len(vs) == 2 * (2 + len(SPEEDS))
    want = [16_000, 16_000 / 0.9, 16_000 / 1.1, 16_000]  # 10% slower is 10% longer
    assert all(abs(len(v) - n) <= 1 for v, n in zip(vs[:4], want, strict=True)), [len(v) for v in vs[:4]]
    assert np.allclose(vs[0], w) and not np.allclose(vs[3], w)  # as is, then under noise
    assert float(np.sqrt(np.mean(pink_noise(50_000, rng) ** 2))) == pytest.approx(1.0, rel=1e-3)
    assert hit_rate(np.array([0.9, 0.5, 0.7]), 0.7) == pytest.approx(2 / 3, abs=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        hit_rate(np.zeros(0), 0.5)
    with pytest.raises(ValueError, match="empty rendition"):
        variants([np.zeros(0, np.float32)])


def test_rest_enrollment_reports_the_expected_hit_rate(
    make_client: Callable[..., TestClient], engines: None
) -> None:
    c = make_client(enroll_hit_rate=True)
    r = c.post("/v1/keywords", json={"text": "hey jarvis", "threshold": 0.0})
    assert r.status_code == 201, r.text
    body = r.json()
    assert "expected_fa_per_hour" in body and body["expected_hit_rate"] == 1.0  # every score >= 0
    r = c.post("/v1/keywords", json={"text": "turn on the lights", "threshold": 1.0})
    body = r.json()
    assert body["expected_hit_rate"] == 0.0
    (note,) = [w for w in body["warnings"] if "hit rate" in w]
    assert "TTS estimate" in note and "target_fa_per_hour" in note and "proxy 'tts'" in note
    again = c.post("/v1/keywords", json={"text": "hey jarvis"}).json()  # already enrolled: not estimated
    assert again["created"] is False and again["expected_hit_rate"] is None
    off = make_client(enroll_hit_rate=False)  # the same database, another replica
    assert off.post("/v1/keywords", json={"text": "stop"}).json()["expected_hit_rate"] is None


def test_tts_renditions_are_synthesized_once(model_dir: Path, tmp_path: Path, engines: None) -> None:
    sp = Spotter.load(model_dir, device="cpu")
    tts = CountingTTS()
    reg = KeywordRegistry(
        KeywordStore(f"sqlite:///{tmp_path / 'k.db'}"), sp, tts=tts, sensitivity=Sensitivity(None, 0.5)
    )
    out = reg.enroll(
        "t",
        [
            EnrollItem("hey jarvis", proxy="tts"),
            EnrollItem("play music", proxy="text"),
            EnrollItem("stop", 0.3, proxy="both"),
        ],
    )
    assert tts.calls == [
        "hey jarvis",
        "stop",
        "play music",
    ]  # proxies first, then the text proxy's renditions
    assert all(e.expected_hit_rate is not None for e in out)
    reg.enroll("t", [EnrollItem("hey jarvis", proxy="tts")])  # already enrolled: nothing synthesized
    assert len(tts.calls) == 3


def test_missing_tts_leaves_the_hit_rate_out_with_a_warning(model_dir: Path, tmp_path: Path) -> None:
    sp = Spotter.load(model_dir, device="cpu")
    reg = KeywordRegistry(
        KeywordStore(f"sqlite:///{tmp_path / 'k.db'}"),
        sp,
        tts=ProxyTTS(espeak_binary="/nonexistent/espeak-ng"),
    )
    (e,) = reg.enroll("t", [EnrollItem("hey jarvis")])
    assert e.expected_hit_rate is None and e.created
    assert any("expected hit rate not estimated" in w and "espeak-ng" in w for w in e.warnings)


def test_a_keyword_rarely_reached_at_the_default_is_flagged(
    trained_model: Path,  # noqa: F811  (the imported fixture)
    make_client: Callable[..., TestClient],
    engines: None,
) -> None:
    """The packaged model at default settings: the issue's "computer" (threshold ~0.81 at 0.5 FA/h)."""
    c = make_client(model_dir=trained_model, enroll_hit_rate=True)
    body = c.post("/v1/keywords", json={"text": "computer"}).json()
    assert body["expected_fa_per_hour"] is not None and body["expected_hit_rate"] < 0.5, body
    assert any("hit rate" in w and "TTS estimate" in w for w in body["warnings"]), body["warnings"]

"""Acoustic keyword proxies (enrollment ``proxy``: ``text`` | ``tts`` | ``both``) with the trained model
in models/default, real espeak-ng and flite, and real (synthesized, held-out voice) speech."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from openkws.engine.acoustic_proxy import combine_proxies
from openkws.engine.spotter import Spotter
from openkws.keywords.store import KeywordStore
from openkws.server.state import AppState
from openkws.text.tts import PROXY_VOICES, ProxyTTS
from tests.service.conftest import silence
from tests.service.test_trained_model import trained_model  # noqa: F401  (fixture)

HELDOUT_VOICES = ("espeak:en-us+f3", "espeak:en-gb-x-rp+Andy")  # not among PROXY_VOICES
MISSING_ESPEAK = "/nonexistent/espeak-ng"


@pytest.fixture(scope="module")
def engines() -> None:
    missing = ProxyTTS().missing()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make setup installs them)")


@pytest.fixture
def make_trained(
    trained_model: Path,  # noqa: F811  (the imported fixture)
    make_client: Callable[..., TestClient],
    engines: None,
) -> Callable[..., TestClient]:
    """``make_trained(**settings)`` -> a started client on the trained model; one data dir per test."""
    return lambda **over: make_client(model_dir=trained_model, **over)


def _state(c: TestClient) -> AppState:
    state = c.app.state.openkws  # type: ignore[attr-defined]
    assert isinstance(state, AppState)
    return state


def _proxy(c: TestClient, keyword_id: int) -> np.ndarray:
    return _state(c).spotter.index.tenant("default").by_id[keyword_id].proxy


def _text_proxy(sp: Spotter, keyword: str) -> np.ndarray:
    p = sp.pronounce(keyword)
    return sp.embed_phoneme_ids([sp.g2p.inventory.encode(list(p.phonemes))])[0]


def _score(sp: Spotter, keyword_id: int, audio: np.ndarray) -> float:
    """Best cosine of ``keyword_id``'s proxy over every detector window of ``audio`` (engine path)."""
    stream = sp.create_stream(keyword_subset=[keyword_id], trace=True)
    stream.accept_waveform(audio)
    stream.input_finished()
    sp.decode(stream)
    assert stream.trace
    return max(p.score for p in stream.trace if p.keyword_id == keyword_id)


def test_tts_enrollment_stores_an_acoustic_proxy(make_trained: Callable[..., TestClient]) -> None:
    c = make_trained()
    r = c.post("/v1/keywords", json={"text": "hey jarvis", "proxy": "tts"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["proxy"] == "tts"
    assert c.get(f"/v1/keywords/{body['id']}").json()["proxy"] == "tts"
    sp = _state(c).spotter
    tts, txt = _proxy(c, body["id"]), _text_proxy(sp, "hey jarvis")
    assert tts.shape == txt.shape == (sp.spec.embedding_dim,)
    assert abs(float(np.linalg.norm(tts)) - 1.0) < 1e-5
    assert float(tts @ txt) < 0.99, "the tts proxy should not be the text proxy"
    # Deterministic synthesis: the stored proxy is exactly the engine's acoustic proxy of the renditions.
    again = sp.acoustic_proxy(ProxyTTS().renditions("hey jarvis", PROXY_VOICES))
    np.testing.assert_allclose(tts, again, atol=1e-5)
    # "both" is the normalised sum of the two; "text" (the default) is the text proxy.
    both = c.post("/v1/keywords", json={"text": "okay computer", "proxy": "both"}).json()
    want = combine_proxies(
        _text_proxy(sp, "okay computer"), sp.acoustic_proxy(ProxyTTS().renditions("okay computer")), "both"
    )
    np.testing.assert_allclose(_proxy(c, both["id"]), want, atol=1e-5)
    plain = c.post("/v1/keywords", json={"text": "play music"}).json()
    assert plain["proxy"] == "text"
    np.testing.assert_allclose(_proxy(c, plain["id"]), _text_proxy(sp, "play music"), atol=1e-5)


def test_tts_proxy_scores_its_keyword_above_another(
    make_trained: Callable[..., TestClient], synth: Callable[[str, str], np.ndarray]
) -> None:
    c = make_trained()
    keywords = ("hey jarvis", "turn on the lights")
    r = c.post("/v1/keywords/batch", json={"keywords": [{"text": k, "proxy": "tts"} for k in keywords]})
    assert r.status_code == 200, r.text
    ids = {k["text"]: k["id"] for k in r.json()["keywords"]}
    sp = _state(c).spotter
    for spoken in keywords:
        other = next(k for k in keywords if k != spoken)
        for voice in HELDOUT_VOICES:
            clip = np.concatenate([silence(0.5), synth(spoken, voice), silence(0.5)])
            own, wrong = _score(sp, ids[spoken], clip), _score(sp, ids[other], clip)
            assert own > wrong + 0.05, f"{spoken!r} ({voice}): own proxy {own:.3f}, {other!r} {wrong:.3f}"


def test_invalid_proxy_lists_accepted_values(make_trained: Callable[..., TestClient]) -> None:
    c = make_trained()
    r = c.post("/v1/keywords", json={"text": "hey jarvis", "proxy": "audio"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_request"
    assert "proxy" in err["message"] and all(f"'{m}'" in err["message"] for m in ("text", "tts", "both"))
    r = c.post("/v1/keywords/batch", json={"keywords": [{"text": "hey jarvis", "proxy": "TTS"}]})
    assert r.status_code == 422 and "keywords.0.proxy" in r.json()["error"]["message"]
    assert c.get("/v1/keywords").json()["total"] == 0


def test_tts_proxy_survives_restart_without_synthesis(make_trained: Callable[..., TestClient]) -> None:
    first = make_trained()
    kid = first.post("/v1/keywords", json={"text": "hey jarvis", "proxy": "tts"}).json()["id"]
    stored = _proxy(first, kid).copy()
    first.__exit__(None, None, None)
    # espeak-ng "missing" after the restart: the proxy must come from the store, not from synthesis.
    second = make_trained(espeak_binary=MISSING_ESPEAK)
    np.testing.assert_allclose(_proxy(second, kid), stored, atol=1e-6)
    assert second.get(f"/v1/keywords/{kid}").json()["proxy"] == "tts"
    # Re-enrolling the same text is idempotent (200, unchanged) and needs no synthesis either.
    again = second.post("/v1/keywords", json={"text": "hey jarvis", "proxy": "tts"})
    assert again.status_code == 200 and again.json()["id"] == kid


@pytest.mark.parametrize(
    "setting, missing", [("espeak_binary", MISSING_ESPEAK), ("flite_binary", "/nonexistent/flite")]
)
def test_tts_unavailable_is_a_clear_error(
    make_trained: Callable[..., TestClient], setting: str, missing: str
) -> None:
    c = make_trained(**{setting: missing})
    for body, path in (
        ({"text": "hey jarvis", "proxy": "tts"}, "/v1/keywords"),
        (
            {"keywords": [{"text": "play music"}, {"text": "hey jarvis", "proxy": "both"}]},
            "/v1/keywords/batch",
        ),
    ):
        r = c.post(path, json=body)
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "tts_unavailable"
        assert missing in err["message"] and "proxy 'text'" in err["message"]
    assert c.get("/v1/keywords").json()["total"] == 0, "a failed batch enrolls nothing"
    assert c.post("/v1/keywords", json={"text": "hey jarvis"}).status_code == 201
    assert c.get("/readyz").status_code == 200, "a missing TTS engine does not make the server unready"


def test_old_database_gains_the_proxy_columns(tmp_path: Path) -> None:
    """A keywords table created before proxy modes existed is migrated in place; its rows are text proxies."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE keywords (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant VARCHAR(64), text VARCHAR(256), "
                "phonemes VARCHAR(1024), threshold FLOAT, metadata JSON, created_at DATETIME, updated_at DATETIME, "
                "CONSTRAINT uq_keywords_tenant_text UNIQUE (tenant, text))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO keywords (tenant, text, phonemes, threshold, created_at, updated_at) "
                "VALUES ('default', 'hey jarvis', 'HH EY | JH AA R V IH S', 0.5, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    store = KeywordStore(url)
    try:
        (rec,) = store.all()
        assert (rec.text, rec.proxy_mode, rec.proxy, rec.proxy_model) == ("hey jarvis", "text", None, None)
        KeywordStore(url).close()  # a second start finds the columns and adds nothing
    finally:
        store.close()


def test_service_proxy_equals_the_evaluated_one(make_trained: Callable[..., TestClient]) -> None:
    """The pair evaluation (``openkws eval pairs --proxy tts``) scores the proxy the service enrolls."""
    evaluate = pytest.importorskip("openkws.training.evaluate", reason="the training extra is not installed")
    c = make_trained()
    kid = c.post("/v1/keywords", json={"text": "hey jarvis", "proxy": "tts"}).json()["id"]
    scorer = evaluate.EngineScorer(_state(c).settings.model_dir)
    np.testing.assert_allclose(
        _proxy(c, kid), scorer.tts_embeddings(["hey jarvis"], PROXY_VOICES)[0], atol=1e-4
    )

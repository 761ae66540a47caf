"""Keyword registry over REST: enrollment, idempotency, confusables, pagination, persistence, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openkws.engine.model_spec import ModelContractError
from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text import G2P


def test_enroll_returns_normalized_text_phonemes_threshold(client: TestClient) -> None:
    r = client.post("/v1/keywords", json={"text": "  Hey, JARVIS! ", "metadata": {"room": "kitchen"}})
    assert r.status_code == 201
    kw = r.json()
    assert kw["text"] == "hey jarvis"
    assert kw["phonemes"] == ["HH", "EY", "|", "JH", "AA", "R", "V", "AH", "S"]
    assert kw["threshold"] == pytest.approx(0.5)  # the model's default
    assert kw["metadata"] == {"room": "kitchen"} and kw["created"] is True and kw["confusable_with"] == []
    assert kw["created_at"].endswith("Z") or "+00:00" in kw["created_at"]
    assert client.get(f"/v1/keywords/{kw['id']}").json()["text"] == "hey jarvis"


def test_same_text_twice_is_idempotent(client: TestClient) -> None:
    a = client.post("/v1/keywords", json={"text": "hey jarvis", "threshold": 0.6}).json()
    r = client.post("/v1/keywords", json={"text": "HEY JARVIS", "threshold": 0.9})
    assert r.status_code == 200
    b = r.json()
    assert b["id"] == a["id"] and b["created"] is False and b["threshold"] == pytest.approx(0.6)
    assert client.get("/v1/keywords").json()["total"] == 1
    assert client.get("/readyz").json()["keywords"] == 1


def test_batch_enrollment_is_all_or_nothing(client: TestClient) -> None:
    r = client.post("/v1/keywords/batch", json={"keywords": [{"text": "play music"}, {"text": "@@@"}]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert (
        err["code"] == "invalid_keyword_text"
        and err["rule"] == "unsupported_character"
        and err["position"] == 1
    )
    assert "keywords[1].text" in err["message"]
    assert client.get("/v1/keywords").json()["total"] == 0
    r = client.post(
        "/v1/keywords/batch",
        json={
            "keywords": [{"text": "play music"}, {"text": "stop", "threshold": 0.7}, {"text": "Play Music"}]
        },
    )
    assert r.status_code == 200
    kws = r.json()["keywords"]
    assert [k["created"] for k in kws] == [True, True, False] and kws[0]["id"] == kws[2]["id"]
    assert kws[1]["threshold"] == pytest.approx(0.7)


def test_confusables_are_listed(make_client: Callable[..., TestClient]) -> None:
    # The untrained model's proxies are all close, so the cosine gate is opened and the phoneme test decides.
    c = make_client(confusable_min_cosine=-1.0)
    first = c.post("/v1/keywords", json={"text": "hey jarvis"}).json()
    c.post("/v1/keywords", json={"text": "turn on the lights"})
    r = c.post("/v1/keywords", json={"text": "hey travis"}).json()
    names = {x["text"]: x for x in r["confusable_with"]}
    assert set(names) == {"hey jarvis"}
    assert names["hey jarvis"]["id"] == first["id"] and names["hey jarvis"]["reason"] == "similar"
    assert 0 < names["hey jarvis"]["phoneme_distance"] <= 0.5
    part = c.post("/v1/keywords", json={"text": "lights"}).json()
    assert [(x["text"], x["reason"]) for x in part["confusable_with"]] == [
        ("turn on the lights", "contained_in")
    ]
    # Within one batch, later items are compared with earlier ones.
    b = c.post("/v1/keywords/batch", json={"keywords": [{"text": "hello"}, {"text": "hello alexa"}]}).json()
    assert [x["text"] for x in b["keywords"][1]["confusable_with"]] == ["hello"]


def test_cosine_gate_applies(make_client: Callable[..., TestClient]) -> None:
    c = make_client(confusable_min_cosine=1.01)  # nothing is that close
    c.post("/v1/keywords", json={"text": "hey jarvis"})
    assert c.post("/v1/keywords", json={"text": "hey jarvas"}).json()["confusable_with"] == []


def test_pagination(client: TestClient) -> None:
    texts = [f"keyword number {w}" for w in ("one", "two", "three", "four", "five")]
    client.post("/v1/keywords/batch", json={"keywords": [{"text": t} for t in texts]})
    seen, after = [], None
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = client.get("/v1/keywords", params=params).json()
        assert page["total"] == 5
        seen += [k["text"] for k in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == texts


def test_patch_and_delete(client: TestClient) -> None:
    kid = client.post("/v1/keywords", json={"text": "okay computer"}).json()["id"]
    r = client.patch(f"/v1/keywords/{kid}", json={"threshold": 0.77})
    assert r.status_code == 200 and r.json()["threshold"] == pytest.approx(0.77)
    assert client.get(f"/v1/keywords/{kid}").json()["threshold"] == pytest.approx(0.77)
    assert client.delete(f"/v1/keywords/{kid}").status_code == 204
    assert client.get(f"/v1/keywords/{kid}").status_code == 404
    assert client.get("/readyz").json()["keywords"] == 0


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("!!! ???", "no_words"),
        ("привет мир", "non_latin"),
        ("a" * 65, "too_long"),
        ("one two three four five six seven", "too_many_words"),
    ],
)
def test_invalid_keyword_text(client: TestClient, text: str, rule: str) -> None:
    r = client.post("/v1/keywords", json={"text": text})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_keyword_text" and err["rule"] == rule and err["message"]
    assert client.get("/v1/keywords").json()["total"] == 0


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "high"])
def test_threshold_outside_range(client: TestClient, threshold: object) -> None:
    r = client.post("/v1/keywords", json={"text": "stop", "threshold": threshold})
    assert r.status_code == 422
    assert "threshold" in r.json()["error"]["message"]
    kid = client.post("/v1/keywords", json={"text": "stop"}).json()["id"]
    r = client.patch(f"/v1/keywords/{kid}", json={"threshold": threshold})
    assert r.status_code == 422 and "[0, 1]" in r.json()["error"]["message"] or threshold == "high"
    assert client.get(f"/v1/keywords/{kid}").json()["threshold"] == pytest.approx(0.5)


def test_unknown_id(client: TestClient) -> None:
    for method in ("get", "delete"):
        r = getattr(client, method)("/v1/keywords/12345")
        assert r.status_code == 404 and r.json()["error"]["code"] == "keyword_not_found"
        assert "12345" in r.json()["error"]["message"]
    r = client.patch("/v1/keywords/12345", json={"threshold": 0.5})
    assert r.status_code == 404
    assert client.get("/v1/keywords/not-a-number").status_code == 422


def test_request_shape_errors(client: TestClient, make_client: Callable[..., TestClient]) -> None:
    assert client.post("/v1/keywords", json={"txt": "stop"}).status_code == 422
    assert (
        client.post(
            "/v1/keywords", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    big = {"text": "stop", "metadata": {"blob": "x" * 5000}}
    r = client.post("/v1/keywords", json=big)
    assert r.status_code == 422 and r.json()["error"]["code"] == "metadata_too_large"
    assert client.post("/v1/keywords/batch", json={"keywords": []}).status_code == 422
    small = make_client(max_batch_keywords=2)
    r = small.post("/v1/keywords/batch", json={"keywords": [{"text": "a"}, {"text": "b"}, {"text": "c"}]})
    assert r.status_code == 413 and "at most 2" in r.json()["error"]["message"]
    r = client.post("/v1/keywords", content=b"x" * (5 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert client.get("/readyz").status_code == 200  # still serving


def test_keywords_survive_restart(make_settings: Callable[..., Settings], g2p: G2P) -> None:
    settings = make_settings()
    with TestClient(create_app(settings, g2p=g2p)) as c:
        ids = {
            k["text"]: k["id"]
            for k in c.post(
                "/v1/keywords/batch",
                json={
                    "keywords": [
                        {"text": "hey jarvis", "threshold": 0.61},
                        {"text": "play music", "metadata": {"a": 1}},
                    ]
                },
            ).json()["keywords"]
        }
        c.delete(f"/v1/keywords/{ids['play music']}")
        c.post("/v1/keywords", json={"text": "stop"})
    with TestClient(create_app(settings, g2p=g2p)) as c:
        items = c.get("/v1/keywords").json()["items"]
        assert [(k["text"], k["threshold"]) for k in items] == [
            ("hey jarvis", pytest.approx(0.61)),
            ("stop", pytest.approx(0.5)),
        ]
        assert c.get("/readyz").json()["keywords"] == 2  # the index was rebuilt from the store
        assert c.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"] == ids["hey jarvis"]


def test_mismatched_model_refuses_to_start(
    model_dir: Path, tmp_path: Path, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    bad = tmp_path / "bad-model"
    shutil.copytree(model_dir, bad)
    spec = json.loads((bad / "model.json").read_text())
    spec["windows_frames"] = [8, 12, 16]
    (bad / "model.json").write_text(json.dumps(spec))
    with (
        pytest.raises(ModelContractError, match="windows_frames"),
        TestClient(create_app(make_settings(model_dir=bad), g2p=g2p)),
    ):
        pass
    missing = make_settings(model_dir=tmp_path / "nothing-here")
    with pytest.raises(ModelContractError, match="model.json"), TestClient(create_app(missing, g2p=g2p)):
        pass
    (bad / "model.json").write_text(json.dumps({**spec, "windows_frames": [8, 12, 16, 22, 30]}))
    (bad / "text.onnx").write_bytes((bad / "text.onnx").read_bytes()[:-10])
    with (
        pytest.raises(ModelContractError, match="sha256"),
        TestClient(create_app(make_settings(model_dir=bad), g2p=g2p)),
    ):
        pass


def test_replicas_follow_the_shared_store(make_settings: Callable[..., Settings], g2p: G2P) -> None:
    """Two apps on one database (replicas): each picks up the other's writes within sync_interval_s."""
    import time

    settings = make_settings(sync_interval_s=0.1)
    with TestClient(create_app(settings, g2p=g2p)) as a, TestClient(create_app(settings, g2p=g2p)) as b:
        kid = a.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
        a.patch(f"/v1/keywords/{kid}", json={"threshold": 0.9})

        def wait(cond: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 10
            while not cond():
                assert time.monotonic() < deadline, "replica did not catch up"
                time.sleep(0.05)

        wait(lambda: b.get("/readyz").json()["keywords"] == 1)
        state = b.app.state.openkws  # type: ignore[attr-defined]
        wait(lambda: state.spotter.index.tenant("default").by_id[kid].threshold == pytest.approx(0.9))
        a.delete(f"/v1/keywords/{kid}")
        wait(lambda: b.get("/readyz").json()["keywords"] == 0)

"""API keys, scopes and tenant isolation over REST and the websocket (auth on, in-process app)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openkws.cli import app as cli_app
from openkws.constants import SAMPLE_RATE
from openkws.protocol import CloseCode
from openkws.server.run import is_loopback, warn_if_exposed
from openkws.settings import Settings
from tests.reliability.conftest import Tenant
from tests.service.conftest import KEYWORDS, START, collect, pcm16, wav_bytes

STOP = json.dumps({"type": "stop", "version": 1})


def stream(
    c: TestClient, audio: np.ndarray, start: dict[str, Any] | None = None, url: str = "/v1/stream", **kw: Any
) -> tuple[list[dict[str, Any]], int]:
    with c.websocket_connect(url, **kw) as ws:
        ws.send_text(json.dumps(start or START))
        first = json.loads(ws.receive_text())
        if first["type"] != "ready":
            rest, code = collect(ws)
            return [first, *rest], code
        data = pcm16(audio)
        for i in range(0, len(data), 6400):
            ws.send_bytes(data[i : i + 6400])
        ws.send_text(STOP)
        msgs, code = collect(ws)
        return [first, *msgs], code


def refused(c: TestClient, url: str = "/v1/stream", **kw: Any) -> tuple[dict[str, Any], int]:
    """A connection the server refuses before ``start``: its error message and close code."""
    with c.websocket_connect(url, **kw) as ws:
        msgs, code = collect(ws)
    assert len(msgs) == 1 and msgs[0]["type"] == "error", msgs
    return msgs[0], code


def enroll(
    c: TestClient, t: Tenant, texts: tuple[str, ...] | list[str], threshold: float | None = None
) -> dict[str, int]:
    body = {
        "keywords": [{"text": x} if threshold is None else {"text": x, "threshold": threshold} for x in texts]
    }
    r = c.post("/v1/keywords/batch", json=body, headers=t.h())
    assert r.status_code == 200, r.text
    return {k["text"]: k["id"] for k in r.json()["keywords"]}


def test_requests_need_a_valid_key(auth_client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    for headers in (
        {},
        {"Authorization": "Bearer okws_0123456789ab_" + "x" * 43},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {a.admin}x"},
    ):
        r = auth_client.get("/v1/keywords", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert auth_client.get("/v1/keywords", headers=a.h()).status_code == 200
    # health, readiness and metrics stay open (probes, scrapers)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert auth_client.get(path).status_code == 200


def test_scopes(auth_client: TestClient, tenants: tuple[Tenant, Tenant], speech: np.ndarray) -> None:
    a, _ = tenants
    r = auth_client.post("/v1/keywords", json={"text": "hey jarvis"}, headers=a.h("stream"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert "admin" in r.json()["error"]["message"]
    assert auth_client.get("/v1/keywords", headers=a.h("stream")).status_code == 403
    assert auth_client.get("/v1/keys", headers=a.h("stream")).status_code == 403
    wav = wav_bytes(speech[:SAMPLE_RATE])
    for scope in ("stream", "admin"):  # admin may also detect
        r = auth_client.post("/v1/detect", files={"file": ("a.wav", wav, "audio/wav")}, headers=a.h(scope))
        assert r.status_code == 200, r.text
    assert auth_client.post("/v1/detect", files={"file": ("a.wav", wav, "audio/wav")}).status_code == 401


def test_revoked_key_stops_working(auth_client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    r = auth_client.post("/v1/keys", json={"scope": "stream", "name": "kiosk"}, headers=a.h())
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["tenant"] == "acme" and new["scope"] == "stream" and new["token"].startswith("okws_")
    listed = auth_client.get("/v1/keys", headers=a.h()).json()["items"]
    assert new["key_id"] in {k["key_id"] for k in listed} and all("token" not in k for k in listed)
    assert {k["tenant"] for k in listed} == {"acme"}
    # another tenant cannot see or revoke it: the same 404 as a key that does not exist
    other = auth_client.delete(f"/v1/keys/{new['key_id']}", headers=b.h())
    missing = auth_client.delete("/v1/keys/000000000000", headers=b.h())
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "key_not_found"
    assert new["key_id"] not in {
        k["key_id"] for k in auth_client.get("/v1/keys", headers=b.h()).json()["items"]
    }
    headers = {"Authorization": f"Bearer {new['token']}"}
    assert (
        auth_client.post(
            "/v1/detect", files={"file": ("a.wav", b"RIFF", "audio/wav")}, headers=headers
        ).status_code
        != 401
    )
    assert auth_client.delete(f"/v1/keys/{new['key_id']}", headers=a.h()).status_code == 204
    assert (
        auth_client.post(
            "/v1/detect", files={"file": ("a.wav", b"RIFF", "audio/wav")}, headers=headers
        ).status_code
        == 401
    )
    msg, code = refused(auth_client, "/v1/stream", headers=headers)
    assert code == CloseCode.UNAUTHORIZED and msg["code"] == "unauthorized"


def test_rest_isolation(auth_client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    ids_a = enroll(auth_client, a, ["hey jarvis", "play music"])
    ids_b = enroll(auth_client, b, ["hey jarvis"])  # same text, other tenant: its own keyword
    assert ids_b["hey jarvis"] not in ids_a.values()
    listed_b = auth_client.get("/v1/keywords", headers=b.h()).json()
    assert [k["id"] for k in listed_b["items"]] == [ids_b["hey jarvis"]] and listed_b["total"] == 1
    nonexistent = max([*ids_a.values(), *ids_b.values()]) + 1000
    for kid in ids_a.values():
        for method, kw in (("GET", {}), ("PATCH", {"json": {"threshold": 0.9}}), ("DELETE", {})):
            cross = auth_client.request(method, f"/v1/keywords/{kid}", headers=b.h(), **kw)
            none = auth_client.request(method, f"/v1/keywords/{nonexistent}", headers=b.h(), **kw)
            assert cross.status_code == none.status_code == 404, (method, cross.text)
            # identical apart from the id itself: nothing tells that the id exists elsewhere
            assert cross.json() == json.loads(none.text.replace(str(nonexistent), str(kid)))
    # nothing changed for A
    kws = {k["id"]: k for k in auth_client.get("/v1/keywords", headers=a.h()).json()["items"]}
    assert set(kws) == set(ids_a.values()) and all(k["threshold"] != 0.9 for k in kws.values())
    # detect with A's ids from B: the same 404 as unknown ids
    wav = wav_bytes(np.zeros(SAMPLE_RATE, np.float32))
    cross = auth_client.post(
        "/v1/detect",
        params={"keywords": [ids_a["play music"]]},
        files={"file": ("a.wav", wav, "audio/wav")},
        headers=b.h("stream"),
    )
    none = auth_client.post(
        "/v1/detect",
        params={"keywords": [nonexistent]},
        files={"file": ("a.wav", wav, "audio/wav")},
        headers=b.h("stream"),
    )
    assert cross.status_code == none.status_code == 404
    assert cross.json()["error"]["code"] == none.json()["error"]["code"] == "keyword_not_found"


def test_stream_isolation(
    auth_client: TestClient, tenants: tuple[Tenant, Tenant], speech: np.ndarray, calibrated_threshold: float
) -> None:
    a, b = tenants
    ids_a = enroll(auth_client, a, KEYWORDS, calibrated_threshold)
    ids_b = enroll(auth_client, b, ["what a lovely day"], 1.0)  # never fires
    msgs_a, code_a = stream(auth_client, speech, headers=a.h("stream"))
    dets_a = [m for m in msgs_a if m["type"] == "detection"]
    assert code_a == 1000 and dets_a, "tenant A's stream should detect its calibrated keywords"
    assert msgs_a[0]["keywords"] == len(KEYWORDS)
    assert {d["keyword_id"] for d in dets_a} <= set(ids_a.values())
    # the same audio on B's stream: only B's keywords are matched, never A's
    msgs_b, code_b = stream(auth_client, speech, headers=b.h("stream"))
    assert code_b == 1000 and msgs_b[0]["keywords"] == 1 and msgs_b[-1]["type"] == "summary"
    assert not [m for m in msgs_b if m["type"] == "detection"]
    # naming A's ids in B's start: the same refusal as unknown ids
    cross, code_cross = stream(
        auth_client, speech, {**START, "keywords": [ids_a["hey jarvis"]]}, headers=b.h("stream")
    )
    bogus = max(ids_b.values()) + 1000
    none, code_none = stream(auth_client, speech, {**START, "keywords": [bogus]}, headers=b.h("stream"))
    assert code_cross == code_none == CloseCode.UNKNOWN_KEYWORD
    assert cross[0]["message"] == none[0]["message"].replace(str(bogus), str(ids_a["hey jarvis"]))


def test_websocket_token_options(auth_client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    quiet = np.zeros(SAMPLE_RATE // 2, np.float32)
    # header, browser subprotocol (answered with openkws.v1, never the token), query parameter
    _, code = stream(auth_client, quiet, headers=a.h("stream"))
    assert code == 1000
    with auth_client.websocket_connect("/v1/stream", subprotocols=["openkws.v1", "bearer." + a.stream]) as ws:
        assert ws.accepted_subprotocol == "openkws.v1"
        ws.send_text(json.dumps(START))
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_text(STOP)
        msgs, code = collect(ws)
    assert code == 1000 and msgs[-1]["type"] == "summary"
    _, code = stream(auth_client, quiet, url=f"/v1/stream?token={a.stream}")
    assert code == 1000
    # refusals
    msg, code = refused(auth_client)
    assert code == CloseCode.UNAUTHORIZED and "Bearer" in msg["message"]
    msg, code = refused(auth_client, "/v1/stream?token=okws_nope")
    assert code == CloseCode.UNAUTHORIZED


def test_auth_off_is_the_default_tenant_with_admin(client: TestClient) -> None:
    r = client.post("/v1/keywords", json={"text": "hey jarvis"})
    assert r.status_code == 201
    assert client.get("/v1/keywords", headers={"Authorization": "Bearer whatever"}).json()["total"] == 1


def test_keys_cli(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    runner = CliRunner()
    data = tmp_path / "data"  # make_settings' data_dir: the server below shares this database
    r = runner.invoke(
        cli_app,
        ["keys", "create", "--tenant", "acme", "--scope", "admin", "--name", "ops", "--data-dir", str(data)],
    )
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[0]
    assert token.startswith("okws_")
    bad = runner.invoke(
        cli_app, ["keys", "create", "--tenant", "a b", "--scope", "admin", "--data-dir", str(data)]
    )
    assert bad.exit_code == 2 and "tenant" in bad.output
    bad = runner.invoke(
        cli_app, ["keys", "create", "--tenant", "acme", "--scope", "root", "--data-dir", str(data)]
    )
    assert bad.exit_code == 2 and "scope" in bad.output
    listed = runner.invoke(cli_app, ["keys", "list", "--data-dir", str(data)])
    key_id = token.split("_")[1]
    assert listed.exit_code == 0 and key_id in listed.output and "active" in listed.output
    assert token.split("_", 2)[2] not in listed.output  # never the secret
    c = make_client(auth=True)
    assert c.get("/v1/keywords", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert runner.invoke(cli_app, ["keys", "revoke", key_id, "--data-dir", str(data)]).exit_code == 0
    assert c.get("/v1/keywords", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "revoked" in runner.invoke(cli_app, ["keys", "list", "--data-dir", str(data)]).output
    assert runner.invoke(cli_app, ["keys", "revoke", "000000000000", "--data-dir", str(data)]).exit_code == 1
    # only the hash is stored
    import sqlite3

    with sqlite3.connect(data / "keywords.db") as db:
        rows = db.execute("select secret_hash from api_keys").fetchall()
    assert rows and all(token not in r[0] and len(r[0]) == 64 for r in rows)


def test_warns_loudly_when_open_without_auth(caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with caplog.at_level(logging.WARNING, logger="openkws"):
        assert warn_if_exposed(Settings(host="0.0.0.0"))
    assert any(
        r.levelno == logging.WARNING and "AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    assert not warn_if_exposed(Settings(host="127.0.0.1"))
    assert not warn_if_exposed(Settings(host="0.0.0.0", auth=True))
    assert not caplog.records

"""Durability: acknowledged writes survive ``kill -9`` at random moments (a real server subprocess),
and a start-up whose index is out of step with the store rebuilds it."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from bench._server import ServerProcess
from bench.words import SPOKEN_WORDS
from openkws.engine.index import KeywordEntry

CYCLES = int(os.environ.get("OPENKWS_CRASH_CYCLES", "20"))
WORDS = SPOKEN_WORDS[:32]


def test_reconcile_rebuilds_an_index_out_of_step(client: TestClient) -> None:
    r = client.post(
        "/v1/keywords/batch", json={"keywords": [{"text": t} for t in ("hey jarvis", "play music", "stop")]}
    )
    ids = [k["id"] for k in r.json()["keywords"]]
    kw = client.app.state.openkws.registry  # type: ignore[attr-defined]
    index = kw.spotter.index
    assert not kw.check_index()
    # drift three ways: a missing keyword, a stale extra one, a different threshold
    index.remove("default", [ids[0]])
    proxy = index.tenant("default").by_id[ids[1]].proxy
    index.upsert([KeywordEntry(9999, "default", "ghost", ("G", "OW", "S", "T"), 0.5, proxy)])
    index.set_thresholds("default", {ids[2]: 0.01})
    diff = kw.check_index()
    assert diff.missing == (ids[0],) and diff.extra == (9999,) and diff.thresholds == (ids[2],)
    n, found = kw.reconcile()
    assert found == diff and n == 3 and not kw.check_index()
    assert index.tenant("default").by_id[ids[2]].threshold != 0.01


def test_startup_rebuilds_the_index_from_the_store(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    first = make_client()
    ids = [first.post("/v1/keywords", json={"text": t}).json()["id"] for t in ("hey jarvis", "play music")]
    first.__exit__(None, None, None)
    with caplog.at_level("INFO", logger="openkws"):
        second = make_client()  # same data_dir: a fresh process finds the store and an empty index
    assert any("out of step" in r.getMessage() for r in caplog.records)
    assert second.get("/readyz").json()["keywords"] == 2
    assert not second.app.state.openkws.registry.check_index()  # type: ignore[attr-defined]
    assert sorted(second.app.state.openkws.spotter.index.tenant("default").by_id) == sorted(ids)  # type: ignore[attr-defined]


class _Known:
    """What the client knows for sure: acknowledged enrollments, thresholds and deletes."""

    def __init__(self) -> None:
        self.present: dict[str, int] = {}  # text -> id (acknowledged, or seen after a restart)
        self.threshold: dict[
            int, set[float]
        ] = {}  # acceptable thresholds (a pending patch may or may not be in)
        self.deleted: set[int] = set()  # acknowledged deletes
        self.deleting: set[int] = set()  # deletes in flight when the server died: either outcome is fine
        self.acked = 0

    def check(self, url: str) -> dict[str, Any]:
        """Every acknowledged keyword is there with its id and threshold; acknowledged deletes stay
        deleted; the index (readyz count, a stream on every id) matches the store."""
        items: list[dict[str, Any]] = []
        after = None
        with httpx.Client(base_url=url, timeout=30) as c:
            while True:
                page = c.get(
                    "/v1/keywords", params={"limit": 1000, **({"after": after} if after else {})}
                ).json()
                items += page["items"]
                after = page["next_after"]
                if after is None:
                    break
            ready = c.get("/readyz").json()
        by_text = {k["text"]: k for k in items}
        by_id = {k["id"]: k for k in items}
        gone = self.deleted | self.deleting
        lost = [
            t
            for t, i in self.present.items()
            if i not in gone and (t not in by_text or by_text[t]["id"] != i)
        ]
        assert not lost, f"acknowledged keywords lost after kill -9: {lost[:10]}"
        self.deleted |= {i for i in self.deleting if i not in by_id}
        self.deleting.clear()
        back = sorted(self.deleted & set(by_id))
        assert not back, f"acknowledged deletes came back: {back}"
        for kid, allowed in self.threshold.items():
            if kid in by_id and kid not in self.deleted:
                assert any(abs(by_id[kid]["threshold"] - t) < 1e-9 for t in allowed), (
                    kid,
                    by_id[kid],
                    allowed,
                )
                self.threshold[kid] = {by_id[kid]["threshold"]}
        for k in items:  # unacknowledged writes that made it are now durable too
            self.present.setdefault(k["text"], k["id"])
            self.threshold.setdefault(k["id"], {k["threshold"]})
        assert ready["keywords"] == len(items), f"index has {ready['keywords']} keywords, store {len(items)}"
        if items:  # every stored id is in the index (an unknown id would close 4004)
            ws_url = url.replace("http://", "ws://") + "/v1/stream"
            with connect(ws_url, open_timeout=30) as ws:
                ws.send(
                    json.dumps(
                        {
                            "type": "start",
                            "version": 1,
                            "sample_rate": 16000,
                            "encoding": "pcm16le",
                            "keywords": sorted(by_id),
                        }
                    )
                )
                msg = json.loads(ws.recv(timeout=30))
                assert msg["type"] == "ready" and msg["keywords"] == len(items), msg
                ws.send(json.dumps({"type": "stop", "version": 1}))
                while json.loads(ws.recv(timeout=30))["type"] != "summary":
                    pass
        return {"stored": len(items)}


def _writer(
    url: str,
    known: _Known,
    rng: random.Random,
    stop: threading.Event,
    texts: list[str],
    first_ack: threading.Event,
) -> None:
    """Enroll (single and batch), patch and delete as fast as the server answers, until it dies."""
    base = known.acked
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set() and texts:
            if known.acked > base:
                first_ack.set()
            op = rng.random()
            try:
                if op < 0.6:
                    text = texts.pop()
                    r = c.post("/v1/keywords", json={"text": text})
                    if r.status_code in (200, 201):
                        known.present[text] = r.json()["id"]
                        known.threshold[r.json()["id"]] = {r.json()["threshold"]}
                        known.acked += 1
                elif op < 0.8:
                    batch = [texts.pop() for _ in range(min(3, len(texts)))]
                    r = c.post("/v1/keywords/batch", json={"keywords": [{"text": t} for t in batch]})
                    if r.status_code == 200:
                        for k in r.json()["keywords"]:
                            known.present[k["text"]] = k["id"]
                            known.threshold[k["id"]] = {k["threshold"]}
                        known.acked += len(batch)
                else:
                    live = [i for i in known.present.values() if i not in known.deleted]
                    if not live:
                        continue
                    kid = rng.choice(live)
                    if op < 0.9:
                        thr = round(rng.uniform(0.3, 0.9), 3)
                        known.threshold[kid] = known.threshold.get(kid, set()) | {thr}  # in flight: either
                        r = c.patch(f"/v1/keywords/{kid}", json={"threshold": thr})
                        if r.status_code == 200:
                            known.threshold[kid] = {thr}
                            known.acked += 1
                    else:
                        known.deleting.add(kid)
                        r = c.delete(f"/v1/keywords/{kid}")
                        if r.status_code == 204:
                            known.deleting.discard(kid)
                            known.deleted.add(kid)
                            known.acked += 1
            except httpx.HTTPError:
                return  # the server was killed


def test_acknowledged_writes_survive_kill9(model_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(20240607)
    texts = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]
    texts += [
        f"{a} {b} {c}" for a in WORDS[:16] for b in WORDS[8:24] for c in WORDS[16:] if len({a, b, c}) == 3
    ]
    rng.shuffle(texts)  # ~4,600 distinct phrases: more than a fast machine enrolls in 20 cycles
    known = _Known()
    startups: list[float] = []
    phases: dict[str, list[float]] = {"check": [], "first_ack": [], "kill": []}
    stored = 0
    for cycle in range(CYCLES + 1):
        srv = ServerProcess(model_dir, tmp_path / "data", tmp_path / "server.log")
        srv.start()
        try:
            startups.append(srv.wait_ready())
            t = time.monotonic()
            stored = known.check(srv.url)["stored"]
            phases["check"].append(time.monotonic() - t)
            if cycle == CYCLES:
                break
            stop, first_ack = threading.Event(), threading.Event()
            w = threading.Thread(
                target=_writer, args=(srv.url, known, rng, stop, texts, first_ack), daemon=True
            )
            t = time.monotonic()
            w.start()
            # kill at a random moment of the write loop (after its first answer: a slow machine
            # must not turn every cycle into a kill before any write)
            assert first_ack.wait(timeout=120), "no write was acknowledged"
            phases["first_ack"].append(time.monotonic() - t)
            time.sleep(rng.uniform(0.0, 1.0))
            t = time.monotonic()
            srv.kill9()
            stop.set()
            w.join(timeout=30)
            phases["kill"].append(time.monotonic() - t)
            assert not w.is_alive()
        finally:
            srv.kill9()
    assert known.acked >= CYCLES, f"only {known.acked} acknowledged writes in {CYCLES} cycles"
    print(
        f"\ncrash test: {CYCLES} kill -9 cycles, {known.acked} acknowledged writes "
        f"({len(known.present)} keywords, {len(known.deleted)} deletes), {stored} stored at the end, lost 0; "
        f"start-up {np.median(startups):.1f} s median, {max(startups):.1f} s max; per cycle (median s): "
        + ", ".join(f"{k} {np.median(v):.2f}" for k, v in phases.items())
    )

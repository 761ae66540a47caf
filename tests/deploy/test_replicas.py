"""Three openkws replicas on one PostgreSQL registry behind HAProxy, all on loopback.

- Enroll through one replica; a stream served by another detects the keyword; delete it, and no
  replica detects it. Convergence (write acknowledged -> every replica's index, read from each
  replica's /metrics) is measured over 20 enrollments and 20 deletions; the target is 1 s.
- Tenants stay isolated across replicas.
- ``kill -9`` the replica serving a stream (through the balancer) while another client enrolls
  through the balancer: the stream reconnects through HAProxy and detects again, and every
  acknowledged enrollment is in the registry and in every surviving replica's index.
Figures are printed (``-s``) and written to ``$OPENKWS_REPLICA_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.cluster import (
    Balancer,
    Replica,
    Stream,
    pcm16,
    percentile,
    replica_env,
    running,
    silence,
    wait_until,
)
from tests.deploy.conftest import DEFAULT_MODEL, is_trained, speech_wav
from tests.deploy.postgres import PostgresUnavailable, free_port, postgres_server

pytestmark = pytest.mark.slow

N_REPLICAS = 3
CHANGES = 20
TARGET_S = 1.0
POLL_S = 30.0  # the fallback incremental read; only the change feed's NOTIFY can explain < 1 s
NATO = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


@dataclass
class Cluster:
    replicas: list[Replica]
    lb: Balancer
    keys: dict[str, str]  # tenant -> admin token
    report: dict[str, Any]

    def http(self, url: str, tenant: str) -> httpx.Client:
        return httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {self.keys[tenant]}"}
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not is_trained(DEFAULT_MODEL):
        pytest.skip("models/default is not trained: detections would be arbitrary")
    import shutil

    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed (`make setup` installs it)")
    work = tmp_path_factory.mktemp("cluster")
    try:
        pg = postgres_server()
        url = pg.__enter__()
    except PostgresUnavailable as e:
        pytest.skip(str(e))
    from openkws.keywords.store import KeywordStore
    from openkws.server.auth import ApiKeys
    from openkws.settings import Settings

    store = KeywordStore(Settings(database_url=url).resolved_database_url())
    keys = {t: ApiKeys(store).create(t, "admin").token for t in ("acme", "globex")}
    store.close()
    replicas = []
    for i in range(N_REPLICAS):
        port = free_port()
        (work / f"r{i}").mkdir()
        env = replica_env(port, url, work / f"r{i}", DEFAULT_MODEL, POLL_S)
        replicas.append(Replica(f"r{i}", port, work / f"r{i}" / "serve.log", env))
    lb = Balancer(free_port(), work / "haproxy.cfg")
    t0 = time.monotonic()
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        lb.start(replicas)
        assert wait_until(lambda: _lb_ready(lb), 30, 0.1) is not None, "HAProxy did not come up"
        yield Cluster(replicas, lb, keys, {"start_s": round(time.monotonic() - t0, 1)})
    finally:
        lb.stop()
        for r in replicas:
            r.stop()
        pg.__exit__(None, None, None)


def _lb_ready(lb: Balancer) -> bool:
    try:
        return httpx.get(f"{lb.url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _keyword_counts(c: Cluster, clients: list[httpx.Client]) -> list[float]:
    return [
        r.metrics(h).get("openkws_enrolled_keywords", -1) for r, h in zip(c.replicas, clients, strict=True)
    ]


def _converge(c: Cluster, clients: list[httpx.Client], want: int, t_ack: float) -> float:
    """Seconds from the acknowledgement until every replica's index holds ``want`` keywords."""
    seen: dict[int, float] = {}
    deadline = t_ack + 10
    while len(seen) < len(clients) and time.monotonic() < deadline:
        for i, (r, h) in enumerate(zip(c.replicas, clients, strict=True)):
            if i not in seen and r.metrics(h).get("openkws_enrolled_keywords") == want:
                seen[i] = time.monotonic()
        time.sleep(0.002)
    assert len(seen) == len(clients), f"replicas {set(range(len(clients))) - set(seen)} did not reach {want}"
    return max(seen.values()) - t_ack


def test_convergence_after_enroll_and_delete(cluster: Cluster) -> None:
    c = cluster
    clients = [httpx.Client(timeout=5) for _ in c.replicas]
    admins = [c.http(r.url, "acme") for r in c.replicas]
    base = int(_keyword_counts(c, clients)[0])
    enrolled, after_enroll, after_delete = [], [], []
    for i in range(CHANGES):
        via = admins[i % len(admins)]
        r = via.post("/v1/keywords", json={"text": f"{NATO[i]} {NATO[i + 1]}"})
        t_ack = time.monotonic()
        assert r.status_code in (200, 201), r.text
        enrolled.append(r.json()["id"])
        after_enroll.append(_converge(c, clients, base + i + 1, t_ack))
    for i, kid in enumerate(enrolled):
        via = admins[(i + 1) % len(admins)]
        r = via.delete(f"/v1/keywords/{kid}")
        t_ack = time.monotonic()
        assert r.status_code == 204, r.text
        after_delete.append(_converge(c, clients, base + CHANGES - i - 1, t_ack))
    for h in clients + admins:
        h.close()
    c.report["convergence_ms"] = {
        name: {"median": round(percentile(xs, 50) * 1000, 1), "max": round(max(xs) * 1000, 1), "n": len(xs)}
        for name, xs in (("enroll", after_enroll), ("delete", after_delete))
    }
    print(f"\n[replicas] convergence: {c.report['convergence_ms']}")
    assert max(after_enroll) < TARGET_S and max(after_delete) < TARGET_S, c.report["convergence_ms"]


def test_enroll_on_one_replica_detect_on_another_then_delete(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    jarvis = pcm16(speech_wav(tmp_path / "jarvis.wav", lead_s=0.2, tail_s=1.0))
    a, b = c.replicas[0], c.replicas[1]
    with c.http(a.url, "acme") as admin:
        keep = admin.post("/v1/keywords", json={"text": "okay computer"}).json()[
            "id"
        ]  # streams need a keyword
        wait_until(lambda: all(r.metrics().get("openkws_enrolled_keywords", 0) >= 1 for r in c.replicas), 5)
        stream = Stream(b.url, c.keys["acme"])
        r = admin.post("/v1/keywords", json={"text": "hey jarvis"})
        t_ack = time.monotonic()
        assert r.status_code in (200, 201), r.text
        kid = r.json()["id"]
        stream.send(jarvis)  # at once: the keyword's audio reaches B right after the acknowledgement
        hit = stream.wait_detection(t_ack, 5.0)
        assert hit is not None and hit[1]["text"] == "hey jarvis", f"B did not detect: {stream.events[-3:]}"
        c.report["enroll_to_detection_on_other_replica_ms"] = round((hit[0] - t_ack) * 1000, 1)
        assert hit[0] - t_ack < TARGET_S
        stream.close()
        # Delete through A; one target-time later no replica detects it.
        assert admin.delete(f"/v1/keywords/{kid}").status_code == 204
        t_del = time.monotonic()
        time.sleep(max(0.0, TARGET_S - (time.monotonic() - t_del)))
        for r_ in c.replicas:
            s = Stream(r_.url, c.keys["acme"])
            t0 = time.monotonic()
            s.send(jarvis + silence(0.5))
            assert s.wait_detection(t0, 3.0) is None, f"{r_.name} still detects a deleted keyword"
            s.close()
        admin.delete(f"/v1/keywords/{keep}")
    print(
        f"\n[replicas] enroll on r0 -> detection on r1: {c.report['enroll_to_detection_on_other_replica_ms']} ms"
    )


def test_tenants_are_isolated_across_replicas(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    jarvis = pcm16(speech_wav(tmp_path / "jarvis.wav", lead_s=0.2, tail_s=1.0))
    with c.http(c.replicas[2].url, "globex") as g, c.http(c.replicas[0].url, "acme") as a:
        gid = g.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
        aid = a.post("/v1/keywords", json={"text": "okay computer"}).json()["id"]
        assert wait_until(
            lambda: all(r.metrics().get("openkws_enrolled_keywords") == 2 for r in c.replicas), 2
        )
        with c.http(c.replicas[1].url, "acme") as a1:
            assert [k["text"] for k in a1.get("/v1/keywords").json()["items"]] == ["okay computer"]
            assert a1.get(f"/v1/keywords/{gid}").status_code == 404, "another tenant's keyword is invisible"
        s = Stream(c.replicas[1].url, c.keys["acme"])
        t0 = time.monotonic()
        s.send(jarvis)
        assert s.wait_detection(t0, 3.0) is None, "acme's stream detected globex's keyword"
        s.close()
        s = Stream(c.replicas[0].url, c.keys["globex"])
        t0 = time.monotonic()
        s.send(jarvis)
        hit = s.wait_detection(t0, 5.0)
        assert hit is not None and hit[1]["keyword_id"] == gid
        s.close()
        g.delete(f"/v1/keywords/{gid}")
        a.delete(f"/v1/keywords/{aid}")


def test_kill9_mid_stream_reconnects_and_loses_no_acknowledged_keyword(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    jarvis = pcm16(speech_wav(tmp_path / "jarvis.wav", lead_s=0.2, tail_s=1.0))
    lb = c.http(c.lb.url, "acme")
    kid = lb.post("/v1/keywords", json={"text": "hey jarvis"}).json()["id"]
    assert wait_until(lambda: all(kid_in(r, 1) for r in c.replicas), 2) is not None
    stream = Stream(c.lb.url, c.keys["acme"])
    stream.send(silence(1.0), realtime=1.0)
    # Earlier tests' streams may take a moment to be counted closed.
    wait_until(lambda: sum(r.metrics().get("openkws_active_streams", 0) for r in c.replicas) == 1, 5, 0.05)
    serving = [r for r in c.replicas if r.metrics().get("openkws_active_streams") == 1]
    assert len(serving) == 1, "exactly one replica serves the stream"
    victim = serving[0]
    # Enrollments through the balancer while the replica dies: every acknowledged one must survive.
    acked: list[tuple[int, str]] = []
    stop = threading.Event()

    def enroller() -> None:
        with c.http(c.lb.url, "acme") as h:
            i = 0
            while not stop.is_set():
                text = f"{NATO[i % 26]} {NATO[(i * 7 + 3) % 26]} {NATO[(i * 11 + 5) % 26]}"
                i += 1
                try:
                    r = h.post("/v1/keywords", json={"text": text})
                except httpx.HTTPError:
                    continue  # not acknowledged: may or may not exist
                if r.status_code in (200, 201):
                    acked.append((r.json()["id"], text))
                time.sleep(0.05)

    t = threading.Thread(target=enroller, daemon=True)
    t.start()
    time.sleep(0.5)
    t_kill = time.monotonic()
    victim.kill9()
    assert wait_until(lambda: stream.closed_at is not None, 10) is not None, "the client saw no disconnect"
    again: Stream | None = None
    while again is None and time.monotonic() - t_kill < 15:
        try:
            again = Stream(c.lb.url, c.keys["acme"])
        except Exception:
            time.sleep(0.05)
    assert again is not None, "no reconnect through the balancer within 15 s"
    c.report["reconnect_after_kill9_ms"] = {
        "disconnect_seen": round((stream.closed_at - t_kill) * 1000, 1),
        "ready_again": round((again.ready_at - t_kill) * 1000, 1),
    }
    t0 = time.monotonic()
    again.send(jarvis)
    hit = again.wait_detection(t0, 5.0)
    assert hit is not None and hit[1]["keyword_id"] == kid, "the reconnected stream does not detect"
    time.sleep(1.0)
    stop.set()
    t.join(10)
    again.close()
    # Every acknowledged enrollment is in the registry and in every surviving replica's index.
    assert len(acked) >= 5, acked
    listed = {k["id"] for k in lb.get("/v1/keywords", params={"limit": 1000}).json()["items"]}
    lost = [a for a in acked if a[0] not in listed]
    assert not lost, f"acknowledged but lost: {lost}"
    want = len(listed) + 0
    live = list(running(c.replicas))
    assert wait_until(lambda: all(r.metrics().get("openkws_enrolled_keywords") == want for r in live), 2), [
        r.metrics().get("openkws_enrolled_keywords") for r in live
    ]
    c.report["kill9"] = {"acked_enrollments_during_kill": len(acked), "lost": len(lost)}
    lb.close()
    print(f"\n[replicas] kill -9: {c.report['reconnect_after_kill9_ms']}, {c.report['kill9']}")


def kid_in(r: Replica, want: int) -> bool:
    return r.metrics().get("openkws_enrolled_keywords") == want


def test_every_replica_exports_metrics(cluster: Cluster) -> None:
    c = cluster
    for r in running(c.replicas):
        m = r.metrics()
        for name in (
            "openkws_enrolled_keywords",
            "openkws_active_streams",
            "openkws_changefeed_sequence",
            "openkws_changefeed_listening",
            "process_resident_memory_bytes",
        ):
            assert name in m, f"{r.name} /metrics lacks {name}"
        assert m["openkws_changefeed_listening"] == 1
        c.report.setdefault("rss_mb", {})[r.name] = round(m["process_resident_memory_bytes"] / 2**20)
    print(f"\n[replicas] report: {json.dumps(c.report)}")
    out = os.environ.get("OPENKWS_REPLICA_REPORT")
    if out:
        Path(out).write_text(json.dumps(c.report, indent=2))

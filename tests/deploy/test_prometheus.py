"""A real Prometheus server (Debian's `prometheus`) scrapes the openkws served from the runtime
environment on loopback; after keywords are enrolled, audio is streamed and errors are provoked,
every PromQL expression of the Grafana dashboard executes and returns data."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openkws.client import OpenKWSClient, StreamClosed
from tests.deploy.conftest import DOCKER, Served, free_port, speech_wav

DASHBOARD = DOCKER / "grafana" / "dashboards" / "openkws.json"
SCRAPE_INTERVAL = "1s"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval stands for here: covers the traffic below
QUERY_DEADLINE_S = 60.0


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with the dashboard variables substituted as Grafana
    does for the defaults: $instance = All (its allValue), $__rate_interval = RATE_INTERVAL."""
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v.get("allValue", ".*") for v in dash["templating"]["list"]}
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if "expr" not in t:  # the API table (Infinity datasource), not PromQL
                continue
            expr = t["expr"].replace("$__rate_interval", RATE_INTERVAL)
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            assert "$" not in expr, f"unsubstituted variable in {expr}"
            out.append((f"{p['title']} [{t['refId']}]", expr))
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, label, series selector) of each label_values() template variable."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for v in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
        assert m, v["query"]
        out.append((v["name"], m.group(2), m.group(1)))
    return out


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on 127.0.0.1 with the shipped config's openkws job pointed at the test server."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server is not installed (Debian package `prometheus`; `make setup`)")
    work = tmp_path_factory.mktemp("prometheus")
    shipped = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "openkws")
    job = {k: v for k, v in job.items() if k != "dns_sd_configs"}
    job["static_configs"] = [{"targets": [f"127.0.0.1:{served.port}"]}]
    job["scrape_interval"] = SCRAPE_INTERVAL
    cfg = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [job],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = work / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    assert body["data"]["resultType"] == "vector", f"{expr}: {body['data']['resultType']}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def wait_for(prom: str, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        res = query(prom, expr)
        if has_data(res) or time.monotonic() > deadline:
            return res
        time.sleep(0.5)


def make_traffic(served: Served, wav: Path) -> None:
    """Keywords, streamed audio with detections, an offline detect, and two kinds of error."""
    with OpenKWSClient(served.url) as c:
        thr = served.model.threshold
        c.add_keywords(["hey jarvis", "turn on the lights"], threshold=thr)
        events = list(c.stream_file(wav, chunk_ms=100, realtime=False))
        assert events[-1]["type"] == "summary", events[-1]
        assert any(e["type"] == "detection" for e in events), "the streamed audio must give a detection"
        c.detect(wav)
        with pytest.raises(StreamClosed):
            list(c.stream_chunks(iter([b"\x00\x00"]), sample_rate=7000))  # unsupported_sample_rate
    assert httpx.get(f"{served.url}/v1/keywords/987654", timeout=10).status_code == 404  # keyword_not_found


def test_every_dashboard_query_returns_data(
    served: Served, prometheus: str, no_keywords: None, tmp_path: Path
) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    wav = speech_wav(tmp_path / "speech.wav")
    # a first scrape before the traffic, so rate()/increase() see the counters move
    up = wait_for(prometheus, 'up{job="openkws"} == 1')
    assert has_data(up), f"Prometheus never scraped openkws: {query(prometheus, 'up')}"
    make_traffic(served, wav)

    deadline = time.monotonic() + QUERY_DEADLINE_S
    had_data: set[str] = set()
    while True:
        missing = {title: expr for title, expr in queries if not has_data(query(prometheus, expr))}
        had_data |= {title for title, _ in queries if title not in missing}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    counts = ("openkws_inference_batch_size_count", "openkws_detection_latency_seconds_count")
    raw = {q: query(prometheus, q) for q in counts}
    assert not missing, (
        f"raw {raw}\n"
        + "dashboard queries without data:\n"
        + "\n".join(f"  {t}: {e}" for t, e in missing.items())
        # a histogram_quantile() or ratio of rates is NaN once the traffic has left its window, so a
        # panel that never gets data keeps this loop waiting until the others lose theirs
        + f"\n(had data at some poll: {sorted(had_data & set(missing))})"
    )

    for name, label, selector in variable_queries():
        r = httpx.get(
            f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
        ).json()
        assert r["status"] == "success" and r["data"] == [f"127.0.0.1:{served.port}"], (name, r)

    # the numbers mean what the panels say
    kw = query(prometheus, 'max(openkws_enrolled_keywords{job="openkws"})')
    assert float(kw[0]["value"][1]) == 2
    errors = {s["metric"]["code"] for s in query(prometheus, 'openkws_errors_total{job="openkws"}')}
    assert {"unsupported_sample_rate", "keyword_not_found"} <= errors, errors
    sources = {
        s["metric"]["source"] for s in query(prometheus, 'openkws_audio_seconds_total{job="openkws"} > 0')
    }
    assert sources == {"stream", "detect"}, sources
    rss = float(query(prometheus, 'process_resident_memory_bytes{job="openkws"}')[0]["value"][1])
    assert 50e6 < rss < 8e9, rss


def test_a_broken_query_is_caught(prometheus: str) -> None:
    """The check above can fail: a query on a metric openkws does not export returns no data."""
    assert not has_data(query(prometheus, 'sum(rate(openkws_no_such_metric_total{job="openkws"}[1m]))'))

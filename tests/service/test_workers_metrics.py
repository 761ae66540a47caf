"""Issue 24: with ``--workers 2`` a scrape of ``/metrics`` answers for both workers, whichever the
kernel hands it to. Counters are the sum of what both workers served and never go back from one
scrape to the next, not even when a worker is killed and restarted; the stream gauge is the workers'
total; the metric files an earlier run left in ``PROMETHEUS_MULTIPROC_DIR`` do not count."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openkws.server.metrics import REFUSALS
from tests.service.conftest import START, silence, wav_bytes
from tests.service.test_metrics_shared import _stale_counter
from tests.service.test_workers import READY_S, STOP, WORKER, _all_workers, _restarted, _start, _worker_pids

TRIES = 400  # connections until the kernel has handed enough of them to each worker
Scrape = tuple[str, dict[str, float], dict[str, float]]  # worker, every sample, counter samples only


def _key(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _scrape(url: str) -> Scrape:
    r = httpx.get(url + "/metrics", timeout=60)  # a new connection: whichever worker the kernel picks
    assert r.status_code == 200, r.text
    every: dict[str, float] = {}
    counters: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            every[_key(s.name, s.labels)] = s.value
            if fam.type in ("counter", "histogram"):
                counters[_key(s.name, s.labels)] = s.value
    return r.headers[WORKER], every, counters


def _scrapes_from_both(url: str, each: int = 2) -> list[Scrape]:
    """Scrape until each worker has answered ``each`` scrapes."""
    out: list[Scrape] = []
    for _ in range(TRIES):
        out.append(_scrape(url))
        by = Counter(w for w, _, _ in out)
        if by["0"] >= each and by["1"] >= each:
            return out
    raise AssertionError(f"{TRIES} scrapes never reached both workers: {Counter(w for w, _, _ in out)}")


def _requests_on_both(url: str, send: Any, each: int) -> Counter[tuple[str, int]]:
    """Send requests (``send()`` returns a response) until each worker has served ``each`` of them;
    returns how many each (worker, status) served."""
    served: Counter[tuple[str, int]] = Counter()
    for _ in range(TRIES):
        r = send()
        served[(r.headers[WORKER], r.status_code)] += 1
        if all(sum(n for (w, _), n in served.items() if w == wk) >= each for wk in ("0", "1")):
            return served
    raise AssertionError(f"{TRIES} requests never reached both workers: {served}")


async def _hold_a_stream_on_each_worker_and_scrape(url: str) -> list[Scrape]:
    """Open one stream on each worker, keep both open while scraping until both workers have answered
    with both streams counted, then stop them."""
    from websockets.asyncio.client import ClientConnection, connect

    held: dict[str, ClientConnection] = {}
    try:
        for _ in range(TRIES):
            ws = await connect(url.replace("http://", "ws://") + "/v1/stream", max_size=None)
            w = ws.response.headers[WORKER]
            if w in held:
                await ws.close()
                continue
            await ws.send(json.dumps(START))
            assert json.loads(await ws.recv())["type"] == "ready"
            held[w] = ws
            if len(held) == 2:
                break
        assert set(held) == {"0", "1"}, held
        # a connection closed above may still be counted for a moment: wait until only ours are
        deadline = time.monotonic() + READY_S
        while _scrape(url)[1]["openkws_active_streams{}"] != 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        return await asyncio.to_thread(_scrapes_from_both, url)
    finally:
        for ws in held.values():
            await ws.send(STOP)
            assert [json.loads(m) async for m in ws][-1]["type"] == "summary"


def _assert_monotone(scrapes: list[Scrape]) -> None:
    """No counter or histogram sample of a later scrape is below the same sample of an earlier one."""
    for i in range(1, len(scrapes)):
        before, after = scrapes[i - 1][2], scrapes[i][2]
        back = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1.0) < v}
        assert not back, f"scrape {i} (worker {scrapes[i][0]}) went back: {back}"


def test_metrics_answer_for_every_worker(model_dir: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # an earlier run's worker left 1000 /healthz requests: the server start must not count them
    _stale_counter(metrics_dir, 424242, 1000.0)
    server = _start(model_dir, tmp_path, 2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    scrapes: list[Scrape] = []
    try:
        _all_workers(server, 2)
        health = _requests_on_both(server.url, lambda: httpx.get(server.url + "/healthz", timeout=60), 3)
        wav = wav_bytes(silence(1.0).astype(np.float32))
        detect = _requests_on_both(
            server.url,
            lambda: httpx.post(
                server.url + "/v1/detect", files={"file": ("s.wav", wav, "audio/wav")}, timeout=120
            ),
            2,
        )
        scrapes += _scrapes_from_both(server.url)
        for worker, m, _ in scrapes:
            assert m["openkws_http_requests_total{method=GET,route=/healthz,status=200}"] == sum(
                health.values()
            ), (worker, health)
            for status in {s for _, s in detect}:
                key = f"openkws_http_requests_total{{method=POST,route=/v1/detect,status={status}}}"
                assert m[key] == sum(n for (_, s), n in detect.items() if s == status), (worker, detect)
            ok = sum(n for (_, s), n in detect.items() if s == 200)
            assert m["openkws_audio_seconds_total{source=detect}"] == pytest.approx(
                ok * 1.0, abs=0.01 * ok
            ), worker
            refused = sum(n for (_, s), n in detect.items() if s == 503)  # a busy machine may refuse
            assert (
                sum(v for k, v in m.items() if k.startswith("openkws_admission_refusals_total{")) == refused
            )
            for source, reason in REFUSALS:
                assert f"openkws_admission_refusals_total{{reason={reason},source={source}}}" in m
            assert m["openkws_workers{}"] == 2 and m["openkws_active_streams{}"] == 0
            assert m["process_cpu_seconds_total{}"] > 0 and m["process_resident_memory_bytes{}"] > 0

        streaming = asyncio.run(_hold_a_stream_on_each_worker_and_scrape(server.url))
        assert all(m["openkws_active_streams{}"] == 2 for _, m, _ in streaming)  # the sum, on either worker
        scrapes += streaming

        pids = _worker_pids(server)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)
        _restarted(server)
        after = _scrapes_from_both(server.url)
        for worker, m, _ in after:
            # the killed worker's requests still count; its gauges do not (2 workers, not 3)
            assert m["openkws_http_requests_total{method=GET,route=/healthz,status=200}"] == sum(
                health.values()
            ), worker
            assert m["openkws_workers{}"] == 2 and m["openkws_active_streams{}"] == 0, worker
        scrapes += after
    finally:
        assert server.terminate(timeout=120) in (0, 1), server.log_tail()
    _assert_monotone(scrapes)
    assert f"(pid {pids[0]}) exited with -9; restarting it" in server.log_path.read_text()

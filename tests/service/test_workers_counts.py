"""Issue 24: with ``--workers 2``, ``GET /v1/detections/counts`` (the dashboard's keyword table)
answers for the whole server, whichever worker the kernel hands the request to: uploads detected on
either worker add up, a killed and restarted worker's counts neither vanish nor count twice, a deleted
keyword drops out, and a corrupt snapshot file is skipped (:mod:`openkws.server.detection_counts`)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import ServerProcess
from openkws.server.metrics_shared import COUNTS_PREFIX
from tests.service.conftest import KEYWORDS, wav_bytes
from tests.service.test_workers import WORKER, _all_workers, _restarted, _start, _worker_pids
from tests.service.test_workers_metrics import TRIES

# A guard against hanging while the other worker's snapshot (written every 0.5 s) arrives, not a
# timing: without the shared counts a worker never sees the other's detections, and this runs out.
CONVERGE_S = 60.0
Answer = tuple[str, dict[str, Any]]  # worker, body


def _upload_until(server: ServerProcess, wav: bytes, on: set[str], each: int) -> Counter[int]:
    """Upload ``wav`` until each worker in ``on`` has detected in ``each`` uploads; returns every
    detection the uploads answered, by keyword id (a refused upload detects nothing)."""
    detected: Counter[int] = Counter()
    served: Counter[str] = Counter()
    for _ in range(TRIES):
        r = httpx.post(server.url + "/v1/detect", files={"file": ("s.wav", wav, "audio/wav")}, timeout=300)
        if r.status_code == 503:  # a busy machine may refuse; the next try may land anywhere
            continue
        assert r.status_code == 200, r.text
        ids = [d["keyword_id"] for d in r.json()["detections"]]
        assert ids, "the calibrated threshold makes some windows fire"
        detected.update(ids)
        served[r.headers[WORKER]] += 1
        if all(served[w] >= each for w in on):
            return detected
    raise AssertionError(f"{TRIES} uploads never reached {sorted(on)}: {served}")


def _counts(server: ServerProcess) -> Answer:
    r = httpx.get(server.url + "/v1/detections/counts", params={"limit": 1000}, timeout=60)
    assert r.status_code == 200, r.text
    return r.headers[WORKER], r.json()


def _by_id(body: dict[str, Any]) -> dict[int, int]:
    return {k["id"]: k["detections"] for k in body["keywords"]}


def _answers_from_both(server: ServerProcess, each: int = 3) -> list[Answer]:
    """Ask until each worker has answered ``each`` times (a new connection each: any worker)."""
    out: list[Answer] = []
    for _ in range(TRIES):
        out.append(_counts(server))
        by = Counter(w for w, _ in out)
        if by["0"] >= each and by["1"] >= each:
            return out
    raise AssertionError(f"{TRIES} requests never reached both workers: {Counter(w for w, _ in out)}")


def _until_both_answer(server: ServerProcess, want: dict[int, int]) -> None:
    """Return once each worker has answered ``want``; the other's newest detections may take a
    snapshot period to arrive."""
    seen: dict[str, dict[int, int]] = {}
    deadline = time.monotonic() + CONVERGE_S
    while {w for w, got in seen.items() if got == want} != {"0", "1"}:
        assert time.monotonic() < deadline, f"the workers never answered the server's total {want}: {seen}"
        worker, body = _counts(server)
        seen[worker] = _by_id(body)


def _assert_totals(server: ServerProcess, want: dict[int, int], since: str | None = None) -> str:
    """Every answer of both workers is ``want`` (and one ``since``: the server's start); returns it."""
    answers = _answers_from_both(server)
    for worker, body in answers:
        assert _by_id(body) == want, (worker, body, want)
        ranks = [k["detections"] for k in body["keywords"]]
        assert ranks == sorted(ranks, reverse=True), body
    starts = {body["since"] for _, body in answers}
    assert len(starts) == 1 and (since is None or starts == {since}), starts
    return starts.pop()


def test_detection_counts_answer_for_every_worker(
    model_dir: Path, tmp_path: Path, speech: np.ndarray, calibrated_threshold: float
) -> None:
    metrics_dir = tmp_path / "metrics"
    server = _start(model_dir, tmp_path, 2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        _all_workers(server, 2)
        r = httpx.post(
            server.url + "/v1/keywords/batch",
            json={"keywords": [{"text": t, "threshold": calibrated_threshold} for t in KEYWORDS]},
            timeout=300,
        )
        assert r.status_code == 200 and r.headers["x-openkws-sync"] == "ok", (r.text, r.headers)
        wav = wav_bytes(speech)
        total = _upload_until(server, wav, {"0", "1"}, 2)  # detections on both workers
        _until_both_answer(server, dict(total))
        since = _assert_totals(server, dict(total))

        # a corrupt snapshot (a worker killed mid-write could leave one, were writes not atomic)
        (metrics_dir / f"{COUNTS_PREFIX}999999-bad.json").write_bytes(b'{"format": 1, "since": 12')
        _assert_totals(server, dict(total), since)
        assert "detection counts: skipping" in server.log_path.read_text()

        # kill worker 0: its last snapshot keeps counting, its successor starts from zero
        pids = _worker_pids(server)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)
        _restarted(server)
        _assert_totals(server, dict(total), since)  # nothing lost, nothing twice
        total += _upload_until(server, wav, {"0"}, 1)  # the successor's detections add to the dead one's
        _until_both_answer(server, dict(total))
        _assert_totals(server, dict(total), since)

        # a deleted keyword drops out at once on both workers, the dead worker's snapshot included
        gone = max(total, key=lambda i: total[i])
        r = httpx.delete(f"{server.url}/v1/keywords/{gone}", timeout=120)
        assert r.status_code == 204 and r.headers["x-openkws-sync"] == "ok", r.headers
        _assert_totals(server, {i: n for i, n in total.items() if i != gone}, since)
    finally:
        assert server.terminate(timeout=120) in (0, 1), server.log_tail()
    assert f"(pid {pids[0]}) exited with -9; restarting it" in server.log_path.read_text()

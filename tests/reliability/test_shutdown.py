"""Graceful shutdown of a real server process: SIGTERM during active streams delivers a final
``summary`` to every stream and closes them with 1001; an upload in flight completes."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench._server import ServerProcess
from openkws.constants import SAMPLE_RATE
from tests.service.conftest import KEYWORDS, pcm16, wav_bytes

STREAMS = 3
CHUNK = SAMPLE_RATE // 10 * 2  # 100 ms of pcm16


def _stream(url: str, audio: bytes, ready: threading.Semaphore, out: dict[str, Any]) -> None:
    msgs: list[dict[str, Any]] = []
    try:
        with connect(url.replace("http://", "ws://") + "/v1/stream", open_timeout=60, close_timeout=30) as ws:
            ws.send(
                json.dumps({"type": "start", "version": 1, "sample_rate": SAMPLE_RATE, "encoding": "pcm16le"})
            )
            msgs.append(json.loads(ws.recv(timeout=60)))
            ready.release()

            def send() -> None:
                t0 = time.monotonic()
                try:
                    for k, i in enumerate(range(0, len(audio), CHUNK)):  # real time, never a stop
                        time.sleep(max(0.0, t0 + 0.1 * k - time.monotonic()))
                        ws.send(audio[i : i + CHUNK])
                except ConnectionClosed:
                    pass

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            try:
                while True:
                    msgs.append(json.loads(ws.recv(timeout=120)))
            except ConnectionClosed:
                pass
            out["code"] = ws.close_code
    finally:
        out["messages"] = msgs


def _slow_upload(wav: bytes, boundary: str, sent: threading.Event, go_on: threading.Event) -> Iterator[bytes]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    yield head + wav[: len(wav) // 2]
    sent.set()  # the client asks for more: the first half is on the wire
    go_on.wait(60)  # the rest of the body only after SIGTERM: the request is surely in flight
    yield wav[len(wav) // 2 :] + f"\r\n--{boundary}--\r\n".encode()


def test_sigterm_delivers_summaries(
    model_dir: Path, tmp_path: Path, speech: np.ndarray, calibrated_threshold: float
) -> None:
    # generous drain time: this checks behaviour, and a loaded CI machine may be slow to flush
    srv = ServerProcess(
        model_dir,
        tmp_path / "data",
        tmp_path / "server.log",
        log_level="info",
        env={"OPENKWS_SHUTDOWN_TIMEOUT_S": "120"},
    )
    srv.start()
    try:
        srv.wait_ready()
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            r = c.post(
                "/v1/keywords/batch",
                json={"keywords": [{"text": t, "threshold": calibrated_threshold} for t in KEYWORDS]},
            )
            assert r.status_code == 200
        audio = pcm16(np.tile(speech, 4))  # ~30 s: still streaming when the server stops
        ready = threading.Semaphore(0)
        results: list[dict[str, Any]] = [{} for _ in range(STREAMS)]
        threads = [
            threading.Thread(target=_stream, args=(srv.url, audio, ready, results[i]), daemon=True)
            for i in range(STREAMS)
        ]
        for t in threads:
            t.start()
        for _ in range(STREAMS):
            assert ready.acquire(timeout=120), "a stream did not start"
        # an upload in flight: headers and half the body sent before SIGTERM, the rest after
        sent, go_on = threading.Event(), threading.Event()
        upload: dict[str, Any] = {}

        def post() -> None:
            b = "openkwsboundary"
            with httpx.Client(base_url=srv.url, timeout=120) as c:
                upload["response"] = c.post(
                    "/v1/detect",
                    content=_slow_upload(wav_bytes(clip), b, sent, go_on),
                    headers={"content-type": f"multipart/form-data; boundary={b}"},
                )

        clip = speech[: 2 * SAMPLE_RATE]
        poster = threading.Thread(target=post, daemon=True)
        poster.start()
        assert sent.wait(120), "the upload did not start"
        time.sleep(1.0)  # every stream has sent audio by now
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        time.sleep(0.5)
        go_on.set()
        for t in [*threads, poster]:
            t.join(timeout=120)
            assert not t.is_alive()
        srv.proc.wait(timeout=60)  # type: ignore[union-attr]
    finally:
        srv.kill9()
    log = srv.log_tail(20000)
    assert "still open after" not in log, log
    seen = [(r.get("code"), [m["type"] for m in r["messages"]][-6:]) for r in results]
    for res in results:
        msgs = res["messages"]
        assert msgs[0]["type"] == "ready"
        assert res.get("code") == 1001, (res.get("code"), msgs[-3:])
        summary = msgs[-1]
        assert summary["type"] == "summary" and summary["reason"] == "shutting_down", seen
        assert summary["audio_ms"] > 0
        assert summary["detections"] == sum(m["type"] == "detection" for m in msgs)
        assert not [m for m in msgs if m["type"] == "error"]
    r = upload["response"]
    assert r.status_code == 200, r.text
    assert r.json()["duration_ms"] == 2000.0
    assert "Traceback" not in log

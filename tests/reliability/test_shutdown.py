"""Graceful shutdown of a real server process: SIGTERM during active streams delivers a final
``summary`` to every stream and closes them with 1001; an upload in flight completes."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.sync.client import connect
from websockets.uri import parse_uri

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
            out["code"], out["reason"] = ws.close_code, ws.close_reason
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
    # what each stream saw, and the server's log, in every failure message (a CI failure is a rerun away)
    seen = [(r.get("code"), r.get("reason"), [m["type"] for m in r["messages"]][-6:]) for r in results]
    seen_log = f"{seen}\n--- server log ---\n{srv.log_tail(6000)}"
    for res in results:
        msgs = res["messages"]
        assert msgs[0]["type"] == "ready"
        assert res.get("code") == 1001, seen_log
        summary = msgs[-1]
        assert summary["type"] == "summary" and summary["reason"] == "shutting_down", seen_log
        assert summary["audio_ms"] > 0
        assert summary["detections"] == sum(m["type"] == "detection" for m in msgs)
        assert not [m for m in msgs if m["type"] == "error"], seen_log
    r = upload["response"]
    assert r.status_code == 200, r.text
    assert r.json()["duration_ms"] == 2000.0
    assert "Traceback" not in log


class _SlowReader:
    """A websocket client on a raw socket (websockets' sans-I/O protocol) that decides when it reads:
    it can keep sending audio while the server's final frames wait unread, as a client whose reading
    thread is starved under load does."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.proto = ClientProtocol(parse_uri(f"ws://{host}:{port}/v1/stream"))
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.proto.send_request(self.proto.connect())
        self.flush()
        self.messages: list[dict[str, Any]] = []
        self.read_until(lambda: self.proto.state is State.OPEN)
        self.proto.send_text(
            json.dumps(
                {"type": "start", "version": 1, "sample_rate": SAMPLE_RATE, "encoding": "pcm16le"}
            ).encode()
        )
        self.flush()
        self.read_until(lambda: bool(self.messages))

    def flush(self) -> None:
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.sock.recv(65536)
            if data:
                self.proto.receive_data(data)
            else:
                self.proto.receive_eof()
            for e in self.proto.events_received():
                if isinstance(e, Frame) and e.opcode is Opcode.TEXT:
                    self.messages.append(json.loads(bytes(e.data)))
            if not data:
                return


def test_sigterm_waits_for_the_clients_close_reply(
    model_dir: Path, tmp_path: Path, speech: np.ndarray
) -> None:
    """The server closes a stream's connection only after the client answered its close frame. Closed
    at once (uvicorn's shutdown does), a connection whose client is still sending audio is reset:
    the client's close reply fails, and websockets' own client then drops the frames it read with
    the close frame, the summary among them (seen in CI under load)."""
    srv = ServerProcess(
        model_dir, tmp_path / "data", tmp_path / "server.log", env={"OPENKWS_SHUTDOWN_TIMEOUT_S": "120"}
    )
    srv.start()
    try:
        srv.wait_ready()
        client = _SlowReader(srv.url)
        audio = pcm16(np.tile(speech, 2))
        frames = [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]
        for f in frames[:10]:
            client.proto.send_binary(f)
            client.flush()
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        t0 = time.monotonic()
        for f in frames[10:]:  # audio for 1 s more, not reading: the summary and close frame wait
            if time.monotonic() - t0 > 1.0:
                break
            client.proto.send_binary(f)
            client.flush()  # the old server reset the connection here or at the close reply below
            time.sleep(0.02)
        client.read_until(lambda: client.proto.state is not State.OPEN)  # summary, then the close frame
        client.flush()  # the close reply
        client.read_until(lambda: client.proto.state is State.CLOSED)  # the server's FIN, not a reset
        srv.proc.wait(timeout=60)  # type: ignore[union-attr]
    finally:
        srv.kill9()
    assert client.proto.close_code == 1001
    assert client.messages[-1]["type"] == "summary", [m["type"] for m in client.messages]

"""Shared plumbing for the benchmarks that drive a real server: a ``openkws.cli serve`` subprocess on a
free loopback port, and a websocket streaming client (start message, real-time paced frames, stop).

Used by ``bench.service_bench``, ``bench.soak`` and the reliability tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from openkws.constants import SAMPLE_RATE

HOST = "127.0.0.1"
READY_POLL_S = 0.05
WS_OPEN_TIMEOUT_S = 30.0
WS_CLOSE_TIMEOUT_S = 10.0
PROTOCOL_VERSION = 1
AuthHow = Literal["header", "subprotocol", "query"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m openkws.cli serve`` on 127.0.0.1 with a log file; start, wait ready, kill or stop.

    The server runs on CPU (``OPENKWS_DEVICE=cpu``), as one process (``OPENKWS_WORKERS=1``; pass
    another value in ``env`` for several engine workers) and, unless ``omp_threads`` is None, with
    ``OMP_NUM_THREADS`` set; ``env`` is laid over that and the caller's environment.
    """

    def __init__(
        self,
        model_dir: Path,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        log_level: str = "warning",
        omp_threads: int | None = 1,
    ) -> None:
        self.model_dir = model_dir
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = env or {}
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_level = log_level
        self.omp_threads = omp_threads

    def start(self) -> None:
        env = {**os.environ, "OPENKWS_DEVICE": "cpu", "OPENKWS_WORKERS": "1"}
        if self.omp_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.omp_threads)
        env.update(self.env)
        cmd = [
            sys.executable,
            "-m",
            "openkws.cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--model-dir",
            str(self.model_dir),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            self.log_level,
        ]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from now until ``/readyz`` answers 200; raises if the process exits first."""
        import httpx

        assert self.proc is not None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(READY_POLL_S)
        raise RuntimeError(f"server not ready after {timeout:.0f} s; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0, sig: signal.Signals = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM or SIGINT: graceful shutdown) and wait; SIGKILL if it does not exit in time."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return int(self.proc.returncode)


# -- websocket streaming client -------------------------------------------------------------------------
def start_message(
    *, debug: bool | None = None, keywords: Sequence[int] | None = None, vad: str | None = None
) -> str:
    """The ``start`` control message for 16 kHz mono pcm16le; optional fields only when given."""
    msg: dict[str, Any] = {
        "type": "start",
        "version": PROTOCOL_VERSION,
        "sample_rate": SAMPLE_RATE,
        "encoding": "pcm16le",
        "channels": 1,
    }
    if debug is not None:
        msg["debug"] = debug
    if keywords is not None:
        msg["keywords"] = list(keywords)
    if vad is not None:
        msg["vad"] = vad
    return json.dumps(msg)


STOP_MESSAGE = json.dumps({"type": "stop", "version": PROTOCOL_VERSION})


@asynccontextmanager
async def open_stream(
    url: str,
    *,
    token: str | None = None,
    how: AuthHow = "header",
    debug: bool | None = None,
    keywords: Sequence[int] | None = None,
    vad: str | None = None,
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """Connect to ``url``'s ``/v1/stream`` (authenticating with ``token`` by ``how`` when given), send
    ``start`` and yield ``(websocket, first reply)``; the reply is ``ready`` unless the start was refused."""
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    kwargs: dict[str, Any] = {
        "max_size": None,
        "open_timeout": WS_OPEN_TIMEOUT_S,
        "close_timeout": WS_CLOSE_TIMEOUT_S,
    }
    if token is not None:
        if how == "header":
            kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
        elif how == "subprotocol":
            kwargs["subprotocols"] = ["openkws.v1", "bearer." + token]
        else:
            ws_url += f"?token={token}"
    async with connect(ws_url, **kwargs) as ws:
        await ws.send(start_message(debug=debug, keywords=keywords, vad=vad))
        yield ws, json.loads(await ws.recv())


async def send_paced(
    ws: Any,
    frames: Sequence[bytes],
    frame_s: float,
    t0: float,
    *,
    first_at: float = 0.0,
    sent_at: list[float] | None = None,
) -> None:
    """Send ``frames[k]`` at ``t0 + first_at + k * frame_s`` (``time.perf_counter`` clock), then ``stop``.

    ``first_at=frame_s`` sends each frame when its audio would have been recorded; ``sent_at``, when
    given, gets each frame's send time as it goes (a concurrent receiver may read it).
    """
    for k, frame in enumerate(frames):
        delay = t0 + first_at + k * frame_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sent_at is not None:
            sent_at.append(time.perf_counter())
        await ws.send(frame)
    await ws.send(STOP_MESSAGE)


def frames_of(pcm: bytes, frame_ms: int) -> list[bytes]:
    """``pcm`` (16 kHz pcm16le) cut into ``frame_ms`` frames; the last one may be short."""
    step = 2 * SAMPLE_RATE * frame_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]

"""A loopback openkws cluster for tests/deploy/test_replicas.py: N ``openkws serve`` processes on
one PostgreSQL registry, HAProxy in front (websockets, health checks on /readyz), a websocket
stream client and a /metrics scraper."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

START_TIMEOUT_S = 240.0
CHUNK_S = 0.1


@dataclass
class Replica:
    name: str
    port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("openkws", path=str(Path(sys.executable).parent)) or shutil.which("openkws")
        assert exe, "the openkws command is not installed"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [exe, "serve", "--log-level", "warning"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.25)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def metrics(self, client: httpx.Client | None = None) -> dict[str, float]:
        """Unlabelled samples of /metrics (and labelled ones under their full series name)."""
        text = (
            client.get(f"{self.url}/metrics") if client else httpx.get(f"{self.url}/metrics", timeout=5)
        ).text
        out: dict[str, float] = {}
        for m in re.finditer(r"^([a-zA-Z_:][^\s]*)\s+(\S+)$", text, re.MULTILINE):
            out[m.group(1)] = float(m.group(2))
        return out


HAPROXY_CFG = """global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option redispatch
    retries 3
frontend openkws
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance leastconn
    option httpchk GET /readyz
    default-server inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


@dataclass
class Balancer:
    port: int
    cfg: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, replicas: list[Replica]) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        self.cfg.write_text(HAPROXY_CFG.format(port=self.port, servers=servers))
        check = subprocess.run(
            [haproxy, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(self.cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def replica_env(
    port: int, database_url: str, data_dir: Path, model_dir: Path, poll_s: float
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKWS_")}
    env.update(
        {
            "OPENKWS_HOST": "127.0.0.1",
            "OPENKWS_PORT": str(port),
            "OPENKWS_DATABASE_URL": database_url,
            "OPENKWS_DATA_DIR": str(data_dir),
            "OPENKWS_MODEL_DIR": str(model_dir),
            "OPENKWS_DEVICE": "cpu",
            "OPENKWS_AUTH": "true",
            "OPENKWS_SYNC_INTERVAL_S": str(poll_s),
            "OPENKWS_INFERENCE_WORKERS": "1",
            "OPENKWS_WORKERS": "1",  # one engine process per replica: several replicas share this machine
            "OPENKWS_SHUTDOWN_TIMEOUT_S": "5",
            "OMP_NUM_THREADS": "1",
            # a long test enrolls more than the default token bucket allows per key
            "OPENKWS_ENROLL_RATE_PER_S": "1000",
            "OPENKWS_ENROLL_BURST": "1000",
            # durability under kill -9 wants many enrollments a second; the expected hit rate (32 TTS
            # renditions per new keyword) is measured in tests/service/test_enroll_hit_rate.py
            "OPENKWS_ENROLL_HIT_RATE": "false",
        }
    )
    return env


def pcm16(path: Path) -> bytes:
    audio, rate = sf.read(str(path), dtype="int16")
    assert rate == 16_000
    return np.asarray(audio, "<i2").tobytes()


@dataclass
class Stream:
    """One ``/v1/stream`` websocket; a reader thread timestamps every server message."""

    base_url: str
    token: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    closed_at: float | None = None

    def __post_init__(self) -> None:
        from websockets.sync.client import connect

        ws_url = self.base_url.replace("http://", "ws://") + "/v1/stream"
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(
                ws_url,
                max_size=None,
                open_timeout=10,
                additional_headers={"Authorization": f"Bearer {self.token}"},
            )
        )
        self.ws.send(
            json.dumps(
                {"type": "start", "version": 1, "sample_rate": 16_000, "encoding": "pcm16le", "channels": 1}
            )
        )
        ready = json.loads(self.ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        self.ready_at = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                msg = json.loads(self.ws.recv())
                self.events.append((time.monotonic(), msg))
        except (ConnectionClosed, OSError):
            self.closed_at = time.monotonic()

    def send(self, pcm: bytes, realtime: float | None = None) -> None:
        """Send ``pcm`` in 100 ms chunks; ``realtime``: that many times faster than real time (None: at once)."""
        step = int(16_000 * CHUNK_S) * 2
        t0 = time.monotonic()
        for i, off in enumerate(range(0, len(pcm), step)):
            self.ws.send(pcm[off : off + step])
            if realtime:
                wait = t0 + (i + 1) * CHUNK_S / realtime - time.monotonic()
                if wait > 0:
                    time.sleep(wait)

    def detections(self, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.events if m.get("type") == "detection" and t >= since]

    def wait_detection(self, since: float, timeout: float) -> tuple[float, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.detections(since)
            if d:
                return d[0]
            time.sleep(0.005)
        return None

    def finish(self, timeout: float = 120) -> dict[str, Any] | None:
        """Send ``stop`` and wait for the ``summary`` (all audio sent has been processed)."""
        self.ws.send(json.dumps({"type": "stop", "version": 1}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, m in self.events:
                if m.get("type") == "summary":
                    return m
            time.sleep(0.01)
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone (a killed replica)
            self._stack.close()


def silence(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


def wait_until(cond: Any, timeout: float, interval: float = 0.005) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def running(replicas: list[Replica]) -> Iterator[Replica]:
    return (r for r in replicas if r.proc is not None and r.proc.poll() is None)

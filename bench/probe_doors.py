"""Probe the memory bounds of the websocket and Wyoming doors (issue 25), on real servers.

``python -m bench.probe_doors [--flood-mib 200] [--out runs/probe_doors.md]`` starts ``openkws serve``
(auth on, then off) and ``openkws wyoming`` as subprocesses on 127.0.0.1, replays the issue's
inputs, and prints one table row per probe. Each row gives the server's RSS before, at its peak
during the probe (sampled every 20 ms from /proc) and 3 s after, plus how the server ended the
connection. The inputs:

* 125-byte websocket pings sent at full speed by a client that reads nothing after the 101;
* a Wyoming header announcing a 2^40-byte payload, followed by up to 400 MiB;
* one Wyoming ``audio-chunk`` of 100 MiB (streamed, never held in memory).

The helpers are also used by ``tests/reliability/test_doors_ws.py`` and ``tests/lib/test_wyoming_doors.py``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
PING_PAYLOAD = 125  # the largest control frame
PINGS_PER_SEND = 512
SAMPLE_S = 0.02
AFTER_S = 3.0
HEADER = (
    "| door | probe | sent | RSS before (MiB) | RSS peak during | RSS 3 s after | how it ended |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """The peak RSS of ``pid`` while the ``with`` block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


@dataclass
class Flood:
    """What a flooding client saw: bytes it got out, and how the server ended it."""

    sent: int = 0
    ended: str = "not closed"  # "reset", "broken pipe", "EOF", "timeout", "not closed"
    seconds: float = 0.0
    received: bytes = b""

    @property
    def closed(self) -> bool:
        return self.ended in ("reset", "broken pipe", "EOF")


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client frame (masked, payload < 126 bytes)."""
    mask = os.urandom(4)
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def upgrade_request(port: int, path: str = "/v1/stream", headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def _send_until_closed(sock: socket.socket, chunk: bytes, limit: int, flood: Flood) -> None:
    while flood.sent < limit:
        try:
            sock.sendall(chunk)
        except (ConnectionResetError, ConnectionAbortedError):
            flood.ended = "reset"
            return
        except BrokenPipeError:
            flood.ended = "broken pipe"
            return
        except TimeoutError:
            flood.ended = "timeout"  # the server stopped reading but kept the connection
            return
        flood.sent += len(chunk)


def ping_flood(
    port: int, limit: int, headers: dict[str, str] | None = None, first: bytes = b"", timeout_s: float = 30.0
) -> Flood:
    """Open ``/v1/stream``, optionally send ``first`` (a start message frame), then 125-byte pings at
    full speed until ``limit`` bytes are out or the server ends the connection. Reads nothing after
    the handshake's answer."""
    flood = Flood()
    chunk = masked_frame(0x9, b"p" * PING_PAYLOAD) * PINGS_PER_SEND
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(upgrade_request(port, headers=headers))
        head = b""
        while b"\r\n\r\n" not in head:  # the handshake answer is the last thing it reads
            head += sock.recv(1)
        sock.sendall(first)
        _send_until_closed(sock, chunk, limit, flood)
    flood.seconds = time.monotonic() - t0
    return flood


def wyoming_flood(port: int, prelude: bytes, limit: int, timeout_s: float = 30.0) -> Flood:
    """Send ``prelude`` (event headers), then zeros until ``limit`` bytes or the server ends the
    connection, while a thread reads what the server answers (into ``Flood.received``)."""
    flood = Flood()
    chunk = bytes(MIB)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        got: list[bytes] = []

        def read() -> None:
            try:
                while data := sock.recv(65536):
                    got.append(data)
            except OSError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        sock.sendall(prelude)
        _send_until_closed(sock, chunk, limit, flood)
        if flood.ended == "not closed":  # all sent: does the server still answer or close?
            sock.shutdown(socket.SHUT_WR)
        reader.join(timeout_s)
        if flood.ended == "not closed" and not reader.is_alive():
            flood.ended = "EOF"
        flood.received = b"".join(got)
    flood.seconds = time.monotonic() - t0
    return flood


def wyoming_header(event_type: str, data: dict[str, object] | None = None, **lengths: int) -> bytes:
    return (json.dumps({"type": event_type, "data": data or {}, **lengths}) + "\n").encode()


def wyoming_events(raw: bytes) -> list[dict[str, object]]:
    """The events in a server's answer (headers with their data blocks merged; payloads skipped)."""
    out: list[dict[str, object]] = []
    while b"\n" in raw:
        line, raw = raw.split(b"\n", 1)
        header = json.loads(line)
        n = int(header.get("data_length") or 0)
        if n:
            header.setdefault("data", {}).update(json.loads(raw[:n]))
        raw = raw[n + int(header.get("payload_length") or 0) :]
        out.append(header)
    return out


@dataclass
class Row:
    door: str
    probe: str
    before: int
    peak: int
    after: int
    flood: Flood
    answer: str = ""
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return (
            f"| {self.door} | {self.probe} | {self.flood.sent / MIB:.1f} MiB in {self.flood.seconds:.1f} s | "
            f"{self.before / MIB:.0f} | {self.peak / MIB:.0f} (+{(self.peak - self.before) / MIB:.0f}) | "
            f"{self.after / MIB:.0f} | {self.flood.ended}{'; ' + self.answer if self.answer else ''} |"
        )


def measure(door: str, probe: str, pid: int, run: Callable[[], Flood]) -> Row:
    before = rss_bytes(pid)
    with RssSampler(pid) as s:
        flood = run()
    time.sleep(AFTER_S)
    row = Row(door, probe, before, s.peak, rss_bytes(pid), flood)
    print(row.markdown(), flush=True)  # as it comes: a later failure keeps the rows measured so far
    return row


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen in time")


def probe_websocket(flood_bytes: int, data_dir: Path, rows: list[Row]) -> None:
    from bench._server import ServerProcess
    from openkws.settings import packaged_model_dir

    start = masked_frame(0x1, json.dumps({"type": "start", "version": 1, "sample_rate": 16000}).encode())
    for auth in ("on", "off"):
        srv = ServerProcess(
            packaged_model_dir(),
            data_dir / f"ws-{auth}",
            data_dir / f"ws-{auth}.log",
            env={"OPENKWS_AUTH": auth},
        )
        srv.start()
        try:
            srv.wait_ready(timeout=900)
            label = "auth on, no key" if auth == "on" else "auth off"
            rows.append(
                measure(
                    "websocket",
                    f"ping flood, {label}",
                    srv.pid,
                    lambda port=srv.port: ping_flood(port, flood_bytes),
                )
            )
            if auth == "off":
                rows.append(
                    measure(
                        "websocket",
                        "ping flood after start, auth off",
                        srv.pid,
                        lambda port=srv.port: ping_flood(port, flood_bytes, first=start),
                    )
                )
        finally:
            srv.terminate()


def probe_wyoming(data_dir: Path, rows: list[Row]) -> None:
    from bench._server import free_port

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "openkws.cli",
        "wyoming",
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--data-dir",
        str(data_dir / "wyoming"),
    ]
    with open(data_dir / "wyoming.log", "ab") as logf:
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    try:
        _wait_port(port, proc)
        probes = [
            (
                "payload_length 2^40, then 400 MiB",
                wyoming_header(
                    "audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, payload_length=1 << 40
                ),
                400 * MIB,
            ),
            ("data_length 2^40, then 400 MiB", wyoming_header("describe", data_length=1 << 40), 400 * MIB),
            (
                "one 100 MiB audio-chunk",
                wyoming_header("audio-start", {"rate": 16000, "width": 2, "channels": 1})
                + wyoming_header(
                    "audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, payload_length=100 * MIB
                ),
                100 * MIB,
            ),
        ]
        for name, prelude, limit in probes:
            row = measure("Wyoming", name, proc.pid, lambda p=prelude, n=limit: wyoming_flood(port, p, n))
            errors = [e for e in wyoming_events(row.flood.received) if e.get("type") == "error"]
            row.answer = f"error {errors[0]['data']['code']}" if errors else "no error event"  # type: ignore[index]
            rows.append(row)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flood-mib", type=int, default=200, help="websocket ping bytes to send at most")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    rows: list[Row] = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="probe-doors-") as tmp:
        probe_websocket(args.flood_mib * MIB, Path(tmp), rows)
        probe_wyoming(Path(tmp), rows)
    table = "\n".join([HEADER, *(r.markdown() for r in rows)])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()

"""Issue 25, Wyoming door: oversized events get an ``error`` and a close before they are read, and
mistyped fields get an ``error`` naming the field while the connection stays usable."""

from __future__ import annotations

import os
import socket

import pytest

from bench.probe_doors import MIB, RssSampler, wyoming_events, wyoming_flood, wyoming_header
from openkws.wyoming import MAX_DATA_BYTES, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES
from tests.lib.test_wyoming import data_dir, server  # noqa: F401  (fixtures: a real server in a thread)

FMT = {"rate": 16_000, "width": 2, "channels": 1}
RSS_BOUND = 60 * 1000 * 1000


def _port(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1])


def _errors(raw: bytes) -> list[dict[str, str]]:
    return [e["data"] for e in wyoming_events(raw) if e["type"] == "error"]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("prelude", "code", "limit"),
    [
        (
            wyoming_header("audio-chunk", FMT, payload_length=1 << 40),
            "payload_length_too_large",
            MAX_PAYLOAD_BYTES,
        ),
        (wyoming_header("describe", data_length=1 << 40), "data_length_too_large", MAX_DATA_BYTES),
        (
            wyoming_header("audio-start", FMT) + wyoming_header("audio-chunk", FMT, payload_length=100 * MIB),
            "payload_length_too_large",
            MAX_PAYLOAD_BYTES,
        ),
        (
            b'{"type": "describe", "data": {"x": "' + b"a" * (2 * MAX_HEADER_BYTES),
            "header_too_large",
            MAX_HEADER_BYTES,
        ),
    ],
    ids=["payload_length-2^40", "data_length-2^40", "audio-chunk-100MiB", "header-line-32KiB-no-newline"],
)
def test_oversized_event_gets_error_and_close_with_memory_bounded(
    server: str,  # noqa: F811
    prelude: bytes,
    code: str,
    limit: int,
) -> None:
    before = RssSampler(os.getpid())
    with before as rss:  # the server runs in this process: its RSS is ours
        flood = wyoming_flood(_port(server), prelude, 400 * MIB, timeout_s=60)
    errors = _errors(flood.received)
    assert flood.closed, flood
    assert flood.sent < 100 * MIB, flood  # the server stopped reading right after the header
    assert [e["code"] for e in errors] == [code]
    assert str(limit) in errors[0]["text"]
    assert rss.peak - before.peak < RSS_BOUND


def _send_and_describe(uri: str, raw: bytes) -> list[dict[str, object]]:
    """Send raw events, then `describe`; every event back until `info` (or the connection ends)."""
    with socket.create_connection(("127.0.0.1", _port(uri)), timeout=60) as sock:
        sock.sendall(raw + wyoming_header("describe"))
        got = b""
        while data := sock.recv(65536):
            got += data
            try:
                events = wyoming_events(got)
            except ValueError:  # a data block not complete yet
                continue
            if events and events[-1]["type"] == "info":
                return events
    return wyoming_events(got)


MISTYPED = [
    (wyoming_header("audio-start", {**FMT, "rate": "16000"}), "'rate' is \"16000\" (str)"),
    (wyoming_header("audio-start", {**FMT, "rate": None}), "'rate' is null"),
    (wyoming_header("audio-start", {"width": 2, "channels": 1}), "'rate' is missing"),
    (wyoming_header("audio-start", {**FMT, "channels": "1"}), "'channels' is \"1\" (str)"),
    (wyoming_header("audio-start", {**FMT, "channels": 1.5}), "'channels' is 1.5 (float)"),
    (wyoming_header("audio-start", {**FMT, "width": True}), "'width' is true (bool)"),
    (wyoming_header("detect", {"names": [1, 2]}), "'names' is [1, 2]"),
    (wyoming_header("detect", {"names": "hey jarvis"}), "'names' is \"hey jarvis\""),
    (
        wyoming_header("audio-start", FMT) + wyoming_header("audio-chunk", payload_length=4) + b"\0" * 4,
        "'rate' is missing",
    ),
    (
        wyoming_header("audio-start", FMT) + wyoming_header("audio-chunk", {**FMT, "rate": 8000}),
        "rate 8000 differs",
    ),
    (wyoming_header("audio-chunk", FMT, payload_length=2) + b"\0\0", "audio-chunk before audio-start"),
    (wyoming_header("audio-start", {**FMT, "width": 3}), "width 3 not supported"),
    (wyoming_header("audio-start", {**FMT, "rate": 7000}), "7000"),
]


@pytest.mark.parametrize(("raw", "says"), MISTYPED, ids=[m[1] for m in MISTYPED])
def test_mistyped_field_gets_error_naming_it_and_connection_stays(
    server: str,  # noqa: F811
    raw: bytes,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = _send_and_describe(server, raw)
    types = [e["type"] for e in events]
    assert types == ["error", "info"], events  # the same connection answers describe afterwards
    error = events[0]["data"]
    assert isinstance(error, dict) and says in error["text"], error
    if "'" in says:  # a mistyped field: the message says what is accepted
        assert error["code"] == "invalid_field" and "send " in error["text"]
    assert "Traceback" not in caplog.text and "Task exception" not in caplog.text


def test_not_json_header_gets_error_and_close(server: str) -> None:  # noqa: F811
    flood = wyoming_flood(_port(server), b"this is not json\n", 0, timeout_s=30)
    assert flood.ended == "EOF"
    assert [e["code"] for e in _errors(flood.received)] == ["invalid_event"]


def test_peer_leaving_mid_payload_is_quiet(server: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=30) as sock:
        sock.sendall(
            wyoming_header("audio-start", FMT)
            + wyoming_header("audio-chunk", FMT, payload_length=1000)
            + b"\0" * 10
        )
    # the server still serves others, and logged no traceback for the half event
    assert [e["type"] for e in _send_and_describe(server, b"")] == ["info"]
    assert "Traceback" not in caplog.text

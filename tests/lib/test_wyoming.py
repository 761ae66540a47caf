"""`openkws wyoming`: driven over loopback TCP by the wyoming client library, with keywords enrolled
through the REST API into the same database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.wake import Detect, Detection

from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.wyoming import WakeService, WyomingConfig, WyomingError, run_server

SR = 16_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wyoming-data")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    """The Wyoming server in a thread with its own event loop; the REST registry's database."""
    service = WakeService.load(WyomingConfig(data_dir=data_dir))
    uri = f"tcp://127.0.0.1:{_free_port()}"
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        ev = asyncio.Event()
        task = asyncio.ensure_future(run_server(service, uri, ev))
        await ev.wait()
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert started.wait(60), "the Wyoming server did not start"
    yield uri
    for task in asyncio.all_tasks(loop):
        loop.call_soon_threadsafe(task.cancel)
    t.join(timeout=10)


def _enroll_over_rest(data_dir: Path, *texts: str) -> None:
    with TestClient(create_app(Settings(data_dir=data_dir, device="cpu", inference_workers=1))) as c:
        for text in texts:
            assert c.post("/v1/keywords", json={"text": text}).status_code in (200, 201)


async def _exchange(
    uri: str, audio: np.ndarray | None, names: list[str] | None = None, log: list[str] | None = None
) -> list[Event]:
    """describe, then (with audio) [detect,] audio-start / 100 ms chunks / audio-stop; every event back."""
    host, port = uri.removeprefix("tcp://").split(":")
    got: list[Event] = []

    def note(direction: str, e: Event) -> None:
        if log is not None and e.type == "info":
            wake = Info.from_event(e).wake
            log.append(f"{direction} info wake={[(p.name, [m.name for m in p.models]) for p in wake]}")
        elif log is not None and e.type != "audio-chunk":
            log.append(f"{direction} {e.type} {json.dumps(e.data, sort_keys=True)}")

    async with AsyncTcpClient(host, int(port)) as client:

        async def send(e: Event) -> None:
            note("->", e)
            await client.write_event(e)

        await send(Describe().event())
        info = await asyncio.wait_for(client.read_event(), 30)
        assert info is not None
        note("<-", info)
        got.append(info)
        if audio is None:
            return got
        if names is not None:
            await send(Detect(names=names).event())
        await send(AudioStart(rate=SR, width=2, channels=1).event())
        pcm = (audio * 32767).astype("<i2").tobytes()
        step = 2 * SR // 10
        for i in range(0, len(pcm), step):
            await client.write_event(
                AudioChunk(rate=SR, width=2, channels=1, audio=pcm[i : i + step]).event()
            )
        if log is not None:
            log.append(
                f"-> audio-chunk x{(len(pcm) + step - 1) // step} ({len(audio) / SR:.2f} s, 16 kHz int16)"
            )
        await send(AudioStop().event())
        while True:
            e = await asyncio.wait_for(client.read_event(), 60)
            assert e is not None
            note("<-", e)
            got.append(e)
            if e.type in ("detection", "not-detected", "error"):
                break
    return got


def test_describe_lists_rest_keywords_and_audio_is_detected(
    server: str, data_dir: Path, say: Callable[..., np.ndarray]
) -> None:
    _enroll_over_rest(data_dir, "hey jarvis", "turn on the lights")
    log: list[str] = []
    events = asyncio.run(_exchange(server, say("hey jarvis"), log=log))
    info = Info.from_event(events[0])
    assert [p.name for p in info.wake] == ["openkws"]
    assert sorted(m.name for m in info.wake[0].models) == ["hey jarvis", "turn on the lights"]
    det = Detection.from_event(events[-1])
    assert events[-1].type == "detection" and det.name == "hey jarvis" and det.timestamp is not None
    print("\nWyoming exchange:\n  " + "\n  ".join(log))


def test_not_detected_and_detect_names(server: str, data_dir: Path, say: Callable[..., np.ndarray]) -> None:
    _enroll_over_rest(data_dir, "hey jarvis")
    events = asyncio.run(_exchange(server, say("the weather is nice today")))
    assert [e.type for e in events] == ["info", "not-detected"]
    events = asyncio.run(_exchange(server, say("hey jarvis"), names=["turn on the lights"]))
    assert [e.type for e in events] == ["info", "not-detected"]  # listening for another keyword only


def test_keyword_enrolled_later_is_a_wake_word(server: str, data_dir: Path) -> None:
    _enroll_over_rest(data_dir, "okay computer")
    info = Info.from_event(asyncio.run(_exchange(server, None))[0])
    assert "okay computer" in [m.name for m in info.wake[0].models]


def test_bad_uri_is_one_clear_error(data_dir: Path) -> None:
    service: Any = object()
    with pytest.raises(WyomingError, match="tcp://127.0.0.1:10400"):
        asyncio.run(run_server(service, "http://127.0.0.1:1"))

"""Wyoming wake-word server (``openkws wyoming``): the enrolled keywords are Home Assistant wake words.

Home Assistant (and any Wyoming satellite) talks to wake-word services over the Wyoming protocol,
as it does to wyoming-openwakeword. This server answers:

* ``describe`` -> ``info`` with one wake program, ``openkws``, whose models are the enrolled keywords
  (name = phrase = the keyword text);
* ``detect`` (optional) -> the next audio stream listens only for the named keywords;
* ``audio-start`` / ``audio-chunk`` / ``audio-stop`` -> a ``detection`` (name = keyword text,
  timestamp = ms into the stream) per detected keyword, and ``not-detected`` at ``audio-stop`` when
  the stream had none.

Every door is bounded (the server has no authentication, so anyone who reaches the port is a
client): a header line longer than :data:`MAX_HEADER_BYTES`, a ``data_length`` over
:data:`MAX_DATA_BYTES` or a ``payload_length`` over :data:`MAX_PAYLOAD_BYTES` (one audio chunk) gets
an ``error`` event and the connection is closed before anything more is read. A field of the wrong
type (``rate: "16000"``, ``names: [1, 2]``) gets an ``error`` naming the field and what is accepted;
the connection stays open and the current audio stream is dropped.

Keywords come from the REST server's registry (the same database: pass the same data dir or
database URL); the server re-reads it at every ``describe`` and ``audio-start``, so a keyword
enrolled over REST or with ``openkws keywords add`` is a wake word from the next stream on.
Detection runs through :class:`openkws.KeywordSpotter` on the engine loaded for the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.wake import Detect, Detection, NotDetected

from openkws import __version__
from openkws.audio import AudioError
from openkws.keywords.availability import StoreUnavailable
from openkws.kws import KeywordSpotter, Stream
from openkws.server.detection_counts import DetectionCounts
from openkws.server.metrics import Metrics
from openkws.server.state import load_engine
from openkws.settings import Settings

log = logging.getLogger("openkws.wyoming")
MAX_HEADER_BYTES = 16 << 10  # one JSON header line; real ones are < 200 bytes
MAX_DATA_BYTES = 64 << 10  # the JSON data block (a `detect` with many names)
MAX_PAYLOAD_BYTES = 1 << 20  # one payload = one audio-chunk: ~32 s of 16 kHz 16-bit mono
WIDTHS = (2, 4)
ERROR_TIMEOUT_S = 5.0  # an error event to a peer that does not read must not hold the connection
ATTRIBUTION = Attribution(name="openkws", url="")  # no public project URL yet; set it when there is one


@dataclass(frozen=True)
class WyomingConfig:
    uri: str = "tcp://127.0.0.1:10400"
    model_dir: Path | None = None  # None: OPENKWS_MODEL_DIR, else the packaged model
    data_dir: Path | None = None  # None: OPENKWS_DATA_DIR, else the per-user data dir (as `openkws serve`)
    database_url: str | None = None
    tenant: str = "default"


class WakeService:
    """The engine, the registry and the spotter, shared by every connection."""

    def __init__(self, kws: KeywordSpotter, registry: Any, model_version: str) -> None:
        self.kws = kws
        self.registry = registry  # KeywordRegistry: sync() and indexed_texts()
        self.model_version = model_version

    @classmethod
    def load(cls, cfg: WyomingConfig) -> WakeService:
        overrides = {
            k: v
            for k, v in {
                "model_dir": cfg.model_dir,
                "data_dir": cfg.data_dir,
                "database_url": cfg.database_url,
            }.items()
            if v is not None
        }
        settings = Settings.model_validate(overrides)
        spotter, _, registry = load_engine(settings, Metrics(), DetectionCounts())
        return cls(KeywordSpotter(spotter=spotter, tenant=cfg.tenant), registry, spotter.spec.model_version)

    def refresh(self) -> None:
        """Catch up with keywords enrolled, changed or removed through the REST server; while the
        database is away, keep the last snapshot (describe and detection keep working)."""
        try:
            self.registry.sync()
        except StoreUnavailable as e:
            log.warning("%s; serving the keywords loaded before", e)

    def keyword_texts(self) -> list[str]:
        return list(self.registry.indexed_texts(self.kws.tenant))

    def info(self) -> Info:
        models = [
            WakeModel(
                name=t,
                phrase=t,
                attribution=ATTRIBUTION,
                installed=True,
                languages=["en"],
                description=f"typed keyword {t!r}",
                version=self.model_version,
            )
            for t in self.keyword_texts()
        ]
        return Info(
            wake=[
                WakeProgram(
                    name="openkws",
                    attribution=ATTRIBUTION,
                    installed=True,
                    models=models,
                    description="open-vocabulary keyword spotting: typed wake words",
                    version=__version__,
                )
            ]
        )


class Refused(Exception):
    """An event the server does not take: ``code`` and ``message`` go out as an ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _length(header: dict[str, Any], name: str, limit: int) -> int:
    n = header.get(name)
    if n is None:
        return 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise Refused("invalid_event", f"{name} is {json.dumps(n)}; send a non-negative integer")
    if n > limit:
        raise Refused(
            f"{name}_too_large", f"{name} {n} is over the limit of {limit} bytes; send at most {limit}"
        )
    return n


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """One event, each part checked against its limit before it is read; None at end of stream.

    Raises :class:`Refused` for an event whose framing cannot be trusted (too long, not JSON): the
    caller closes the connection, since the rest of the stream cannot be parsed.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise Refused("invalid_event", "the connection ended inside an event header") from None
    except asyncio.LimitOverrunError:
        line = b"x" * (MAX_HEADER_BYTES + 1)  # longer than the reader's buffer limit
    if len(line) > MAX_HEADER_BYTES:
        raise Refused(
            "header_too_large",
            f"event header line over {MAX_HEADER_BYTES} bytes; headers are one short JSON line",
        )
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Refused("invalid_event", "event header is not JSON; send one JSON object per line") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise Refused("invalid_event", 'event header must be a JSON object with a string "type"')
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Refused("invalid_event", f"event data is {type(data).__name__}; send a JSON object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    if data_length:
        try:
            extra = json.loads(await reader.readexactly(data_length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refused("invalid_event", "event data block is not JSON; send a JSON object") from None
        if not isinstance(extra, dict):
            raise Refused("invalid_event", "event data block must be a JSON object")
        data = {**data, **extra}
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def _int(event: Event, name: str, accepted: str) -> int:
    v = event.data.get(name)
    if isinstance(v, bool) or not isinstance(v, int):
        got = "missing" if name not in event.data else f"{json.dumps(v)} ({type(v).__name__})"
        raise Refused("invalid_field", f"{event.type} field {name!r} is {got}; send an integer: {accepted}")
    return v


def _names(event: Event) -> list[str] | None:
    names = event.data.get("names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise Refused(
            "invalid_field",
            f"detect field 'names' is {json.dumps(names)}; send a list of keyword texts (strings), or null for all",
        )
    return names


class WakeHandler(AsyncEventHandler):
    """One Wyoming connection: any number of audio streams, one at a time."""

    def __init__(
        self, service: WakeService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.names: set[str] | None = None  # from `detect`; None = every keyword
        self.stream: Stream | None = None
        self.width = 2
        self.rate = 0
        self.detected = 0

    async def run(self) -> None:
        """Read bounded events until the peer leaves; an event whose size or framing is refused
        gets an ``error`` and ends the connection."""
        self._is_running = True
        try:
            while self._is_running:
                try:
                    event = await read_event(self.reader)
                except Refused as e:
                    log.warning("refused an event: %s; connection closed", e.message)
                    await self._error(e.code, e.message)
                    break
                if event is None or not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer left mid-event
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        """A refused field is answered with ``error`` and the connection stays open; any other
        failure is logged, answered with ``internal_error`` and closes this connection only."""
        try:
            return await self._handle(event)
        except Refused as e:
            return await self._error(e.code, e.message)
        except Exception:
            log.exception("Wyoming event %r failed", event.type)
            await self._error("internal_error", "internal server error; this connection is closed")
            return False

    async def _handle(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await asyncio.to_thread(self.service.refresh)
            await self.write_event(self.service.info().event())
        elif Detect.is_type(event.type):
            names = _names(event)
            self.names = {" ".join(n.lower().split()) for n in names} if names else None
        elif AudioStart.is_type(event.type):
            await self._start(event)
        elif AudioChunk.is_type(event.type):
            await self._chunk(event)
        elif AudioStop.is_type(event.type) and self.stream is not None:
            stream, self.stream = self.stream, None
            stream.input_finished()
            await self._emit(await asyncio.to_thread(stream.detections))
            if not self.detected:
                await self.write_event(NotDetected().event())
        return True

    async def _start(self, event: Event) -> None:
        self.stream = None
        rate = _int(event, "rate", "the sample rate in Hz, e.g. 16000")
        width = _int(event, "width", "2 (16-bit PCM) or 4 (32-bit float)")
        channels = _int(event, "channels", "the number of channels, e.g. 1")
        if width not in WIDTHS:
            raise Refused(
                "unsupported_width",
                f"audio width {width} not supported; send 16-bit (width 2) or 32-bit float (width 4) PCM",
            )
        await asyncio.to_thread(self.service.refresh)
        try:
            self.stream = self.service.kws.create_stream(rate, channels)
        except AudioError as e:
            raise Refused(e.code, e.message) from None
        self.width, self.rate, self.detected = width, rate, 0

    async def _chunk(self, event: Event) -> None:
        if self.stream is None:
            raise Refused("no_audio_start", "audio-chunk before audio-start; send audio-start first")
        fmt = {"rate": self.rate, "width": self.width, "channels": self.stream.channels}
        for name, expected in fmt.items():
            if _int(event, name, f"{expected}, as in audio-start") != expected:
                raise Refused(
                    "invalid_field",
                    f"audio-chunk {name} {event.data[name]} differs from audio-start's {expected}; "
                    "send one format per stream (a new audio-start to change it)",
                )
        audio = event.payload or b""
        dtype = "<i2" if self.width == 2 else "<f4"
        x = np.frombuffer(audio[: len(audio) - len(audio) % self.width], dtype)
        try:
            self.stream.accept_waveform(
                x.reshape(-1, self.stream.channels) if self.stream.channels > 1 else x
            )
        except (AudioError, ValueError) as e:
            raise Refused(getattr(e, "code", "bad_audio"), str(e)) from None
        await self._emit(await asyncio.to_thread(self.stream.detections))

    async def _emit(self, detections: list[Any]) -> None:
        for d in detections:
            if self.names is None or d.text in self.names:
                self.detected += 1
                log.info(
                    "detected %r (score %.3f >= %.2f) at %.0f ms", d.text, d.score, d.threshold, d.decided_ms
                )
                await self.write_event(Detection(name=d.text, timestamp=int(d.decided_ms)).event())

    async def _error(self, code: str, text: str) -> bool:
        self.stream = None
        with contextlib.suppress(ConnectionError, TimeoutError):  # a peer that does not read
            await asyncio.wait_for(self.write_event(Error(text=text, code=code).event()), ERROR_TIMEOUT_S)
        return True


class WyomingError(RuntimeError):
    """The server cannot start (bad URI, address in use); the message says what to do."""


async def run_server(service: WakeService, uri: str, started: asyncio.Event | None = None) -> None:
    """Serve until cancelled or SIGTERM; ``started`` is set once the socket listens (tcp and unix)."""
    try:
        server = AsyncServer.from_uri(uri)
    except ValueError as e:
        raise WyomingError(f"--uri {uri!r}: {e}, e.g. tcp://127.0.0.1:10400") from None
    factory = partial(WakeHandler, service)
    log.info("openkws Wyoming wake-word server on %s (%d keywords)", uri, len(service.keyword_texts()))
    if started is None:
        await server.run(factory)
        return
    await server.start(factory)
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def serve_wyoming(cfg: WyomingConfig) -> None:
    """Blocking entry point of ``openkws wyoming``."""
    service = WakeService.load(cfg)
    try:
        asyncio.run(run_server(service, cfg.uri))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise WyomingError(
            f"cannot listen on {cfg.uri}: {e.strerror or e}; is another server using it? pick another --uri"
        ) from None

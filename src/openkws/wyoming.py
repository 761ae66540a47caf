"""Wyoming wake-word server (``openkws wyoming``): the enrolled keywords are Home Assistant wake words.

Home Assistant (and any Wyoming satellite) talks to wake-word services over the Wyoming protocol,
as it does to wyoming-openwakeword. This server answers:

* ``describe`` -> ``info`` with one wake program, ``openkws``, whose models are the enrolled keywords
  (name = phrase = the keyword text);
* ``detect`` (optional) -> the next audio stream listens only for the named keywords;
* ``audio-start`` / ``audio-chunk`` / ``audio-stop`` -> a ``detection`` (name = keyword text,
  timestamp = ms into the stream) per detected keyword, and ``not-detected`` at ``audio-stop`` when
  the stream had none.

Keywords come from the REST server's registry (the same database: pass the same data dir or
database URL); the server re-reads it at every ``describe`` and ``audio-start``, so a keyword
enrolled over REST or with ``openkws keywords add`` is a wake word from the next stream on.
Detection runs through :class:`openkws.KeywordSpotter` on the engine loaded for the registry.
"""

from __future__ import annotations

import asyncio
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
from openkws.server.metrics import DetectionCounts, Metrics
from openkws.server.state import load_engine
from openkws.settings import Settings

log = logging.getLogger("openkws.wyoming")
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
        self.detected = 0

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await asyncio.to_thread(self.service.refresh)
            await self.write_event(self.service.info().event())
        elif Detect.is_type(event.type):
            names = Detect.from_event(event).names
            self.names = {" ".join(n.lower().split()) for n in names} if names else None
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            await asyncio.to_thread(self.service.refresh)
            if start.width not in (2, 4):
                return await self._error(
                    "unsupported_width",
                    f"audio width {start.width} not supported; send 16-bit "
                    "(width 2) or 32-bit float (width 4) PCM",
                )
            try:
                self.stream = self.service.kws.create_stream(start.rate, start.channels)
            except AudioError as e:
                return await self._error(e.code, e.message)
            self.width, self.detected = start.width, 0
        elif AudioChunk.is_type(event.type):
            if self.stream is None:
                return await self._error(
                    "no_audio_start", "audio-chunk before audio-start; send audio-start first"
                )
            chunk = AudioChunk.from_event(event)
            dtype = "<i2" if self.width == 2 else "<f4"
            x = np.frombuffer(chunk.audio[: len(chunk.audio) - len(chunk.audio) % self.width], dtype)
            try:
                self.stream.accept_waveform(
                    x.reshape(-1, self.stream.channels) if self.stream.channels > 1 else x
                )
            except (AudioError, ValueError) as e:
                return await self._error(getattr(e, "code", "bad_audio"), str(e))
            await self._emit(await asyncio.to_thread(self.stream.detections))
        elif AudioStop.is_type(event.type) and self.stream is not None:
            stream, self.stream = self.stream, None
            stream.input_finished()
            await self._emit(await asyncio.to_thread(stream.detections))
            if not self.detected:
                await self.write_event(NotDetected().event())
        return True

    async def _emit(self, detections: list[Any]) -> None:
        for d in detections:
            if self.names is None or d.text in self.names:
                self.detected += 1
                log.info(
                    "detected %r (score %.3f >= %.2f) at %.0f ms", d.text, d.score, d.threshold, d.decided_ms
                )
                await self.write_event(Detection(name=d.text, timestamp=int(d.decided_ms)).event())

    async def _error(self, code: str, text: str) -> bool:
        await self.write_event(Error(text=text, code=code).event())
        self.stream = None
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

"""One websocket stream, from ``start`` to its last message (protocol in :mod:`openkws.protocol`).

Two tasks share one :class:`AudioSession`: the reader validates messages (the checks live in
:mod:`openkws.server.stream_messages`) and appends audio (cheap, on the event loop); the worker submits the session to the micro-batcher whenever audio is queued
and sends the resulting events. Every stream ends with a final message that says why whenever the
socket can still carry it: ``summary`` (close 1000, or 1001 on shutdown) or ``error`` before any
other close code. Nothing a client sends affects other streams.

Bounded per connection: the websocket layer holds one message at most; input waiting for the
engine stops the reads at ``max_pending_seconds`` / ``max_pending_bytes`` (TCP backpressure; pings
still answered, :class:`openkws.server.run.KeepaliveProtocol`); a client that stops reading is dropped
after ``send_timeout_s``; control frames (pings) are charged to a byte budget below the app
(:mod:`openkws.server.ws_bounds`). On shutdown every stream flushes, sends ``summary`` (``shutting_down``)
and closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from openkws.audio import AudioError
from openkws.engine.vad import VadConfig
from openkws.protocol import (
    AUDIO_CLOSE,
    CloseCode,
    DetectionMessage,
    ErrorMessage,
    Limits,
    NearMissMessage,
    ReadyMessage,
    SummaryMessage,
    to_wire,
)
from openkws.server.admission import CLOSE_TIMEOUT_S, SHUTDOWN_MESSAGE, Close
from openkws.server.batcher import BatcherClosed, QueueFull
from openkws.server.sessions import AudioSession
from openkws.server.state import AppState
from openkws.server.stream_messages import check_frame, keyword_subset, parse_start, parse_stop
from openkws.server.ws_bounds import BUDGET_ERROR

log = logging.getLogger("openkws")


class _Disconnected(Exception):
    """The connection is gone; ``code`` is the close code the websocket layer reported."""

    def __init__(self, code: int = 1005, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _NotReading(Exception):
    """The client did not accept a message for ``send_timeout_s``."""


class StreamHandler:
    def __init__(self, ws: WebSocket, state: AppState, tenant: str) -> None:
        self.ws = ws
        self.state = state
        self.settings = state.settings
        self.tenant = tenant
        self.session: AudioSession | None = None
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.stopped = False
        self.detections = 0
        self.near_misses = 0
        self._send_lock = asyncio.Lock()
        self.opened = time.monotonic()
        self.not_reading = False
        self.closing = False

    async def send(self, msg: Any) -> None:
        async with self._send_lock:
            if self.not_reading:
                raise _NotReading()
            try:
                await asyncio.wait_for(self.ws.send_text(msg.model_dump_json()), self.settings.send_timeout_s)
            except TimeoutError:
                self.not_reading = True
                raise _NotReading() from None
            except (WebSocketDisconnect, OSError, RuntimeError):  # the client went away mid-stream
                raise _Disconnected() from None

    async def receive(self) -> dict[str, Any]:
        s = self.settings
        left = s.max_stream_seconds - (time.monotonic() - self.opened)
        too_long = Close(
            CloseCode.STREAM_TOO_LONG,
            "stream_too_long",
            f"the stream has been open for more than {s.max_stream_seconds:g} s; open a new stream",
        )
        if left <= 0:
            raise too_long
        try:
            msg = await asyncio.wait_for(self.ws.receive(), min(s.idle_timeout_s, left))
        except TimeoutError:
            if s.idle_timeout_s < left:
                raise Close(
                    CloseCode.IDLE_TIMEOUT,
                    "idle_timeout",
                    f"no message for {s.idle_timeout_s:g} s; send audio continuously or stop",
                ) from None
            raise too_long from None
        if msg["type"] == "websocket.disconnect":
            raise _Disconnected(int(msg.get("code") or 1005), str(msg.get("reason") or ""))
        return dict(msg)

    # -- phase 1: start --------------------------------------------------------------------------
    async def start(self) -> AudioSession:
        parsed, fmt = parse_start(await self.receive(), self.settings.max_frame_bytes)
        subset = keyword_subset(parsed, lambda ids: self.state.registry.missing(self.tenant, ids))
        vad = (parsed.vad or self.settings.vad) == "on"
        stream = self.state.spotter.create_stream(
            subset,
            self.tenant,
            debug=parsed.debug,
            competition=parsed.competition,
            vad=VadConfig(aggressiveness=self.settings.vad_aggressiveness) if vad else None,
        )
        session = AudioSession(stream, fmt.sample_rate, fmt.channels, fmt)
        n = self.state.registry.indexed(self.tenant) if subset is None else len(subset)
        await self.send(
            ReadyMessage(
                session_id=session.id,
                model_version=self.state.spotter.spec.model_version,
                sample_rate=fmt.sample_rate,
                encoding=fmt.encoding,
                channels=fmt.channels,
                keywords=n,
                limits=Limits(
                    max_frame_bytes=self.settings.max_frame_bytes,
                    max_stream_seconds=self.settings.max_stream_seconds,
                    idle_timeout_s=self.settings.idle_timeout_s,
                ),
            )
        )
        return session

    # -- phase 2: audio --------------------------------------------------------------------------
    async def read_loop(self, session: AudioSession) -> None:
        s = self.settings
        fmt = session.fmt
        assert fmt is not None
        while True:
            msg = await self.receive()
            if self.closing:  # shutting down: the session is finished, take no more input
                return
            data = msg.get("bytes")
            if data is not None:
                check_frame(data, fmt, s.max_frame_bytes)
                if not data:
                    continue
                if session.received_ms / 1000.0 > s.max_stream_seconds:
                    raise Close(
                        CloseCode.STREAM_TOO_LONG,
                        "stream_too_long",
                        f"more than {s.max_stream_seconds:g} s of audio in one stream; open a new stream",
                    )
                session.push_bytes(data)
                self.wake.set()
                # Backpressure: a client sending faster than we decode is not read from until the
                # backlog drains, so per-stream memory stays bounded (TCP holds the rest).
                while (
                    session.pending_seconds > s.max_pending_seconds
                    or session.pending_bytes > s.max_pending_bytes
                ):
                    self.drained.clear()
                    await self.drained.wait()
                continue
            parse_stop(msg.get("text") or "", s.max_frame_bytes)
            session.finish()
            self.stopped = True
            self.wake.set()
            return

    async def work_loop(self, session: AudioSession) -> None:
        batcher = self.state.batcher
        metrics = self.state.metrics
        source = session.source
        while True:
            await self.wake.wait()
            self.wake.clear()
            while session.has_work():
                try:
                    submitted = time.perf_counter()
                    result = await batcher.submit(session)
                except QueueFull as e:
                    raise Close(CloseCode.TRY_AGAIN_LATER, "overloaded", str(e)) from None
                except BatcherClosed as e:
                    raise Close(CloseCode.GOING_AWAY, "shutting_down", str(e)) from None
                except AudioError as e:
                    raise Close(
                        AUDIO_CLOSE.get(e.code, CloseCode.INVALID_MESSAGE), e.code, e.message
                    ) from None
                finally:
                    self.drained.set()
                decode_s = time.perf_counter() - submitted
                self.state.record_detections(self.tenant, result.detections, source)
                for d in result.detections:
                    self.detections += 1
                    metrics.detection_latency.observe(max(0.0, d.decided_ms - d.end_ms) / 1000.0 + decode_s)
                    await self.send(to_wire(DetectionMessage, d))
                for n in result.near_misses:
                    self.near_misses += 1
                    await self.send(to_wire(NearMissMessage, n))
                if result.finished:
                    await self.send(
                        SummaryMessage(
                            session_id=session.id,
                            audio_ms=session.received_ms,
                            detections=self.detections,
                            near_misses=self.near_misses,
                            frames=session.frames,
                            reason="shutting_down"
                            if self.state.shutting_down.is_set() and not self.stopped
                            else "stop",
                        )
                    )
                    return

    async def _serve(self) -> int:
        """start, then audio until stop (close 1000) or server shutdown (summary, then 1001)."""
        watcher = asyncio.create_task(self.state.shutting_down.wait())
        tasks: list[asyncio.Task[Any]] = [watcher]
        try:
            starting = asyncio.create_task(self.start())
            tasks.append(starting)
            await asyncio.wait({starting, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                raise Close(CloseCode.GOING_AWAY, "shutting_down", SHUTDOWN_MESSAGE)
            self.session = session = starting.result()
            reader = asyncio.create_task(self.read_loop(session))
            worker = asyncio.create_task(self.work_loop(session))
            tasks += [reader, worker]
            await asyncio.wait({reader, worker, watcher}, return_when=asyncio.FIRST_COMPLETED)
            for t in (reader, worker):
                if t.done() and (exc := t.exception()) is not None:
                    raise exc
            code = CloseCode.NORMAL
            if not reader.done():  # shutting down: stop reading, flush what we have, summary, 1001
                self.closing = True  # also if the cancel lands after a receive completed
                reader.cancel()
                session.finish()
                self.wake.set()
                code = CloseCode.GOING_AWAY
            await worker  # flushes and sends the summary (raises Close on failure)
            await self._close(code, "summary sent" if code == CloseCode.NORMAL else "shutting_down")
            return int(code)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t

    async def run(self) -> int:
        """Serve one connection; returns the close code (for metrics)."""
        try:
            return await self._serve()
        except Close as c:
            self.state.metrics.errors.labels(c.error).inc()
            log.info("stream %s: closing with %d %s: %s", self._id, int(c.code), c.error, c.message)
            await self._send_error(c)
            return int(c.code)
        except _Disconnected as d:
            if d.reason == BUDGET_ERROR:  # closed by the websocket layer (openkws.server.ws_bounds)
                self.state.metrics.errors.labels(BUDGET_ERROR).inc()
            if d.code not in (1000, 1001):
                log.info("stream %s: connection closed with %d %s", self._id, d.code, d.reason)
            return d.code
        except WebSocketDisconnect as d:
            return int(d.code)
        except _NotReading:
            self.state.metrics.errors.labels("send_timeout").inc()
            log.info(
                "stream %s: client did not read for %g s; dropped", self._id, self.settings.send_timeout_s
            )
            await self._send_error(
                Close(
                    CloseCode.SEND_TIMEOUT,
                    "send_timeout",
                    f"the client did not read for {self.settings.send_timeout_s:g} s",
                )
            )
            return int(CloseCode.SEND_TIMEOUT)
        except Exception:
            log.exception("stream %s failed", self._id)
            self.state.metrics.errors.labels("internal_error").inc()
            await self._send_error(
                Close(
                    CloseCode.INTERNAL_ERROR,
                    "internal_error",
                    "internal server error; this stream was closed, others are unaffected",
                )
            )
            return int(CloseCode.INTERNAL_ERROR)

    @property
    def _id(self) -> str:
        return self.session.id if self.session else "-"

    async def _send_error(self, c: Close) -> None:
        """The final ``error``, then the close code; tried for at most the close timeout even when the client stopped reading."""
        msg = ErrorMessage(code=c.error, message=c.message, close_code=int(c.code)).model_dump_json()
        with contextlib.suppress(Exception):
            timeout = CLOSE_TIMEOUT_S if self.not_reading else self.settings.send_timeout_s
            await asyncio.wait_for(self.ws.send_text(msg), timeout)
        await self._close(c.code, c.error)

    async def _close(self, code: CloseCode, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(int(code), reason[:120]), CLOSE_TIMEOUT_S)


async def serve_stream(ws: WebSocket, state: AppState, tenant: str) -> None:
    """Serve one admitted connection; counts it by close code and times it."""
    t0 = time.perf_counter()
    code = int(CloseCode.INTERNAL_ERROR)
    try:
        code = await StreamHandler(ws, state, tenant).run()
    finally:
        state.metrics.ws_sessions.labels(str(code)).inc()
        state.metrics.ws_duration.observe(time.perf_counter() - t0)

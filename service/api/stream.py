"""``WS /v1/stream``: live detection over a websocket (protocol in :mod:`openkws.protocol`).

Per connection two tasks share one :class:`AudioSession`: the reader validates messages and appends
audio (cheap, on the event loop); the worker submits the session to the micro-batcher whenever audio
is queued and sends the resulting events. Every error is reported as an ``error`` message, then the
socket closes with a documented code; nothing a client sends affects other streams.

Bounded per connection: at most ``ws_max_queue`` messages wait in the socket layer, input waiting
for the engine stops the reads at ``max_pending_seconds`` / ``max_pending_bytes`` (TCP backpressure),
and a client that stops reading is dropped after ``send_timeout_s`` (so nothing queues outbound).

On shutdown (``AppState.shutting_down``) every stream stops reading, flushes what it has, sends
its ``summary`` (``reason: shutting_down``) and closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..audio import AudioError, AudioFormat
from ..auth import WS_SUBPROTOCOL, websocket_token
from ..batcher import BatcherClosed, QueueFull
from ..engine.vad import VadConfig, VadGate
from ..protocol import (
    CloseCode,
    DetectionMessage,
    ErrorMessage,
    Limits,
    NearMissCandidate,
    NearMissMessage,
    ProtocolError,
    ReadyMessage,
    StartMessage,
    StopMessage,
    SummaryMessage,
    parse_client_message,
)
from ..state import AppState
from ..streaming import AudioSession
from .deps import authenticate
from .errors import ApiError

log = logging.getLogger("openkws")
router = APIRouter(tags=["stream"])

AUDIO_CLOSE = {
    "unsupported_sample_rate": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "unsupported_encoding": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "unsupported_channels": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "truncated_sample": CloseCode.TRUNCATED_SAMPLE,
    "invalid_samples": CloseCode.INVALID_SAMPLES,
}
START_EXAMPLE = '{"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le", "channels": 1}'
CLOSE_TIMEOUT_S = 2.0  # a close frame to a client that does not read must not hold the handler
SHUTDOWN_MESSAGE = "the server is shutting down; reconnect (another replica, or this one once restarted)"


class Close(Exception):
    """End the stream with an ``error`` message and a close code."""

    def __init__(self, code: CloseCode, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message


class _Disconnected(Exception):
    pass


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
        if left <= 0:
            raise Close(CloseCode.STREAM_TOO_LONG, "stream_too_long",
                        f"the stream has been open for more than {s.max_stream_seconds:g} s; open a new stream")
        try:
            msg = await asyncio.wait_for(self.ws.receive(), min(s.idle_timeout_s, left))
        except TimeoutError:
            if s.idle_timeout_s < left:
                raise Close(CloseCode.IDLE_TIMEOUT, "idle_timeout",
                            f"no message for {s.idle_timeout_s:g} s; send audio continuously or stop") from None
            raise Close(CloseCode.STREAM_TOO_LONG, "stream_too_long",
                        f"the stream has been open for more than {s.max_stream_seconds:g} s; open a new stream") from None
        if msg["type"] == "websocket.disconnect":
            raise _Disconnected()
        return dict(msg)

    # -- phase 1: start --------------------------------------------------------------------------
    async def start(self) -> AudioSession:
        msg = await self.receive()
        if msg.get("bytes") is not None:
            raise Close(CloseCode.BINARY_BEFORE_START, "binary_before_start",
                        f"binary audio frame before start; send a JSON start message first, e.g. {START_EXAMPLE}")
        parsed = self._parse(msg.get("text") or "")
        if isinstance(parsed, StopMessage):
            raise Close(CloseCode.INVALID_MESSAGE, "invalid_message", f"stop before start; send start first, e.g. {START_EXAMPLE}")
        fmt = AudioFormat(parsed.sample_rate, parsed.encoding, parsed.channels)
        try:
            fmt.validate()
        except AudioError as e:
            raise Close(AUDIO_CLOSE[e.code], e.code, e.message) from None
        subset = self._subset(parsed)
        stream = self.state.spotter.create_stream(subset, self.tenant, debug=parsed.debug)
        vad = (parsed.vad or self.settings.vad) == "on"
        gate = VadGate(VadConfig(aggressiveness=self.settings.vad_aggressiveness)) if vad else None
        session = AudioSession(stream, fmt.sample_rate, fmt.channels, fmt, gate=gate)
        n = len(self.state.spotter.index.tenant(self.tenant)) if subset is None else len(subset)
        await self.send(ReadyMessage(
            session_id=session.id, model_version=self.state.spotter.spec.model_version,
            sample_rate=fmt.sample_rate, encoding=fmt.encoding, channels=fmt.channels, keywords=n,
            limits=Limits(max_frame_bytes=self.settings.max_frame_bytes,
                          max_stream_seconds=self.settings.max_stream_seconds,
                          idle_timeout_s=self.settings.idle_timeout_s),
        ))
        return session

    def _parse(self, text: str) -> StartMessage | StopMessage:
        if len(text.encode()) > self.settings.max_frame_bytes:
            raise Close(CloseCode.MESSAGE_TOO_BIG, "frame_too_large",
                        f"text message of {len(text.encode())} bytes; at most {self.settings.max_frame_bytes} are accepted")
        try:
            return parse_client_message(text)
        except ProtocolError as e:
            code = "unsupported_version" if e.code == CloseCode.UNSUPPORTED_VERSION else "invalid_message"
            raise Close(e.code, code, e.message) from None

    def _subset(self, start: StartMessage) -> list[int] | None:
        if start.keywords is None:
            return None
        if not start.keywords:
            raise Close(CloseCode.INVALID_MESSAGE, "invalid_message",
                        "keywords is an empty list; omit it (or send null) to match every enrolled keyword")
        missing = self.state.keywords.missing(self.tenant, start.keywords)
        if missing:
            raise Close(CloseCode.UNKNOWN_KEYWORD, "unknown_keyword",
                        f"keyword ids {missing[:20]} are not enrolled; GET /v1/keywords lists enrolled ids")
        return start.keywords

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
                if len(data) > s.max_frame_bytes:
                    raise Close(CloseCode.MESSAGE_TOO_BIG, "frame_too_large",
                                f"binary frame of {len(data)} bytes; at most {s.max_frame_bytes} are accepted "
                                "(send audio in chunks of 20–1000 ms)")
                if len(data) % fmt.bytes_per_frame:
                    raise Close(CloseCode.TRUNCATED_SAMPLE, "truncated_sample",
                                f"binary frame of {len(data)} bytes is not a whole number of samples: {fmt.encoding} "
                                f"with {fmt.channels} channel(s) needs a multiple of {fmt.bytes_per_frame} bytes")
                if not data:
                    continue
                if session.received_ms / 1000.0 > s.max_stream_seconds:
                    raise Close(CloseCode.STREAM_TOO_LONG, "stream_too_long",
                                f"more than {s.max_stream_seconds:g} s of audio in one stream; open a new stream")
                session.push_bytes(data)
                self.wake.set()
                # Backpressure: a client sending faster than we decode is not read from until the
                # backlog drains, so per-stream memory stays bounded (TCP holds the rest).
                while session.pending_seconds > s.max_pending_seconds or session.pending_bytes > s.max_pending_bytes:
                    self.drained.clear()
                    await self.drained.wait()
                continue
            parsed = self._parse(msg.get("text") or "")
            if isinstance(parsed, StartMessage):
                raise Close(CloseCode.INVALID_MESSAGE, "invalid_message",
                            "start was already received; send binary audio frames or {\"type\": \"stop\", \"version\": 1}")
            session.finish()
            self.stopped = True
            self.wake.set()
            return

    async def work_loop(self, session: AudioSession) -> None:
        batcher = self.state.batcher
        metrics = self.state.metrics
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
                    raise Close(AUDIO_CLOSE.get(e.code, CloseCode.INVALID_MESSAGE), e.code, e.message) from None
                finally:
                    self.drained.set()
                decode_s = time.perf_counter() - submitted
                for d in result.detections:
                    self.detections += 1
                    metrics.detections.labels(str(d.keyword_id), "stream").inc()
                    metrics.detection_latency.observe(max(0.0, d.decided_ms - d.end_ms) / 1000.0 + decode_s)
                    await self.send(DetectionMessage(
                        keyword_id=d.keyword_id, text=d.text, score=d.score, threshold=d.threshold,
                        start_ms=d.start_ms, end_ms=d.end_ms, decided_ms=d.decided_ms))
                for n in result.near_misses:
                    self.near_misses += 1
                    await self.send(NearMissMessage(time_ms=n.time_ms, candidates=[
                        NearMissCandidate(keyword_id=c.keyword_id, text=c.text, score=c.score, threshold=c.threshold)
                        for c in n.candidates]))
                if result.finished:
                    await self.send(SummaryMessage(
                        session_id=session.id, audio_ms=session.received_ms, detections=self.detections,
                        near_misses=self.near_misses, frames=session.frames,
                        reason="shutting_down" if self.state.shutting_down.is_set() and not self.stopped else "stop"))
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
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
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
            await self._send_error(c)
            return int(c.code)
        except (_Disconnected, WebSocketDisconnect):
            return 1005
        except _NotReading:
            self.state.metrics.errors.labels("send_timeout").inc()
            log.info("stream %s: client did not read for %g s; dropped", self.session.id if self.session else "-",
                     self.settings.send_timeout_s)
            await self._close(CloseCode.SEND_TIMEOUT, "send_timeout")
            return int(CloseCode.SEND_TIMEOUT)
        except Exception:
            log.exception("stream %s failed", self.session.id if self.session else "-")
            self.state.metrics.errors.labels("internal_error").inc()
            await self._send_error(Close(CloseCode.INTERNAL_ERROR, "internal_error",
                                         "internal server error; this stream was closed, others are unaffected"))
            return int(CloseCode.INTERNAL_ERROR)

    async def _send_error(self, c: Close) -> None:
        with contextlib.suppress(Exception):
            await self.send(ErrorMessage(code=c.error, message=c.message, close_code=int(c.code)))
        await self._close(c.code, c.error)

    async def _close(self, code: CloseCode, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(int(code), reason[:120]), CLOSE_TIMEOUT_S)


async def _refuse(ws: WebSocket, state: AppState | None, code: CloseCode, error: str, message: str) -> None:
    """Refuse a connection before its stream starts: an ``error`` message, then the close code."""
    if state is not None:
        state.metrics.errors.labels(error).inc()
        state.metrics.ws_sessions.labels(str(int(code))).inc()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send_text(ErrorMessage(code=error, message=message, close_code=int(code))
                                            .model_dump_json()), CLOSE_TIMEOUT_S)
        await asyncio.wait_for(ws.close(int(code), error), CLOSE_TIMEOUT_S)


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Authenticate (auth on: ``Authorization: Bearer``, subprotocol ``bearer.<key>`` or ``?token=``),
    check the stream limits, then serve the protocol."""
    state: AppState | None = getattr(ws.app.state, "openkws", None)
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    if state is None:
        await _refuse(ws, state, CloseCode.TRY_AGAIN_LATER, "not_ready", "the service is starting; retry shortly")
        return
    if state.draining:
        await _refuse(ws, state, CloseCode.GOING_AWAY, "shutting_down", SHUTDOWN_MESSAGE)
        return
    settings = state.settings
    try:
        token = websocket_token(ws.headers.get("authorization"), ws.query_params.get("token"), offered)
        principal = await run_in_threadpool(authenticate, state, token) if settings.auth else authenticate(state, None)
    except ApiError as e:
        await _refuse(ws, state, CloseCode.UNAUTHORIZED, e.code, e.message)
        return
    if not principal.allows("stream"):
        await _refuse(ws, state, CloseCode.FORBIDDEN, "forbidden",
                      f"this API key has scope {principal.scope!r}; streaming needs 'stream' or 'admin'")
        return
    limit = settings.max_streams
    if state.active_streams >= limit:
        await _refuse(ws, state, CloseCode.TRY_AGAIN_LATER, "too_many_streams",
                      f"{state.active_streams} streams are open and the limit is {limit}; retry later")
        return
    key = principal.limit_key
    if key is not None and state.streams_per_key.get(key) >= settings.max_streams_per_key:
        await _refuse(ws, state, CloseCode.TRY_AGAIN_LATER, "too_many_streams",
                      f"this API key has {state.streams_per_key.get(key)} streams open and the limit per key is "
                      f"{settings.max_streams_per_key}; close one or retry later")
        return
    metrics = state.metrics
    state.stream_opened()
    if key is not None:
        state.streams_per_key.acquire(key)
    t0 = time.perf_counter()
    code = int(CloseCode.INTERNAL_ERROR)
    try:
        code = await StreamHandler(ws, state, principal.tenant).run()
    finally:
        if key is not None:
            state.streams_per_key.release(key)
        state.stream_ended()
        metrics.ws_sessions.labels(str(code)).inc()
        metrics.ws_duration.observe(time.perf_counter() - t0)

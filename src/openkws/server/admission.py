"""Admission control for websocket streams: who may open one, and the slot it holds while open.

REST routes get the same checks as FastAPI dependencies (``openkws.server.api.deps``); a websocket is
accepted first, so that a refusal can carry an ``error`` message before its close code, and is then
admitted here. :func:`stream_slot` is a context manager: the global and per-key counters are
released however the stream ends.

Overload is decided on the engine's measured load (:class:`~openkws.server.batcher.EngineLoad`), not
on a stream count: :func:`engine_verdict` refuses a new stream when the engine is already behind
(its lag over the last second exceeds ``latency_budget_ms``), or when one more stream would raise the
projected lag past it. The projection treats the workers as a queue: ``n`` streams use
``u = n x cost / workers`` of their time, and a step then waits about ``step / (1 - u)`` (before any
step is measured, ``step`` is one 100 ms client frame: a cold burst stops at 75% utilisation). Refusals
close with 1013 and a Retry-After hint (``POST /v1/detect`` answers 503 with a ``Retry-After``
header), so the streams already admitted keep their latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.websockets import WebSocket

from openkws.protocol import CloseCode, ErrorMessage
from openkws.server.auth import Principal
from openkws.server.batcher import EngineLoad
from openkws.server.state import AppState

SHUTDOWN_MESSAGE = "the server is shutting down; reconnect (another replica, or this one once restarted)"
CLOSE_TIMEOUT_S = 2.0  # a close frame to a client that does not read must not hold the handler
COLD_STEP_S = 0.1  # the step admission assumes before one is measured: a 100 ms client frame


class Close(Exception):
    """End a stream, or refuse one before it starts: an ``error`` message, then ``code``."""

    def __init__(self, code: CloseCode, error: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Verdict:
    """``reason`` is None when admitted, else ``backlog`` or ``latency_budget``."""

    reason: str | None
    message: str = ""
    lag_ms: float = 0.0
    projected_ms: float = 0.0


def engine_verdict(
    load: EngineLoad,
    streams: int,
    budget_ms: float,
    extra_streams: int = 1,
    queued_s: float = 0.0,
    now: float | None = None,
) -> Verdict:
    """May ``extra_streams`` more real-time streams join ``streams`` admitted ones within ``budget_ms``?

    ``queued_s``: how long the oldest job has waited for a worker (the batcher's queue).

    Example:
        >>> load = EngineLoad(slots=2)
        >>> load.record(busy_s=0.05, audio_s=5.0, lag_s=0.15, now=0.0)  # 0.01 worker-s per stream-s
        >>> engine_verdict(load, 100, 400.0, now=0.5).reason is None  # u = 0.5: 0.05 / 0.5 = 100 ms
        True
        >>> engine_verdict(load, 180, 400.0, now=0.5).reason  # u = 0.905: 0.05 / 0.095 = 526 ms
        'latency_budget'
    """
    lag_ms = 1000.0 * max(load.backlog_s(now), queued_s + (load.step_s or 0.0))
    if streams == 0:  # no admitted stream to protect: the first stream of an idle engine is admitted
        return Verdict(None, lag_ms=lag_ms)
    if lag_ms > budget_ms:
        return Verdict(
            "backlog",
            f"the engine is {lag_ms:.0f} ms behind real time (latency budget {budget_ms:.0f} ms)",
            lag_ms,
            lag_ms,
        )
    # No live step measured yet (a cold server, only the warm-up's cost): assume one client frame per
    # step. Admitting up to saturation instead let a burst of 150 connections in 100 ms fill a cold
    # server to u ~ 1, and its admitted streams fell 1.8 s behind.
    step = load.step_s if load.step_s is not None else COLD_STEP_S
    u = load.utilisation(streams + extra_streams)
    projected_ms = float("inf") if u >= 1.0 else 1000.0 * step / (1.0 - u)
    if projected_ms > budget_ms:
        return Verdict(
            "latency_budget",
            f"{streams} streams keep the engine {100 * load.utilisation(streams):.0f}% busy; one more "
            + (
                "would saturate it"
                if projected_ms == float("inf")
                else f"would raise the projected lag to {projected_ms:.0f} ms"
            )
            + f" (latency budget {budget_ms:.0f} ms)",
            lag_ms,
            projected_ms,
        )
    return Verdict(None, lag_ms=lag_ms, projected_ms=projected_ms)


def check_engine(state: AppState, source: str, extra_streams: int = 1) -> Verdict:
    """The verdict for one more stream (``source`` ``stream``) or upload (``detect``), counted in
    ``openkws_admission_refusals_total`` when it refuses."""
    v = engine_verdict(
        state.batcher.load,
        state.active_streams,
        state.settings.latency_budget_ms,
        extra_streams,
        queued_s=state.batcher.oldest_wait_s(),
    )
    if v.reason is not None:
        state.metrics.refusals.labels(source, v.reason).inc()
    return v


def serving_state(ws: WebSocket) -> AppState:
    """The app's state when it takes streams (not starting, not draining)."""
    state: AppState | None = getattr(ws.app.state, "openkws", None)
    if state is None:
        raise Close(CloseCode.TRY_AGAIN_LATER, "not_ready", "the service is starting; retry shortly")
    if state.draining:
        raise Close(CloseCode.GOING_AWAY, "shutting_down", SHUTDOWN_MESSAGE)
    return state


@asynccontextmanager
async def stream_slot(state: AppState, principal: Principal) -> AsyncIterator[None]:
    """Check scope and the stream limits, then hold one slot (global and per key) while the body runs."""
    if not principal.allows("stream"):
        raise Close(
            CloseCode.FORBIDDEN,
            "forbidden",
            f"this API key has scope {principal.scope!r}; streaming needs 'stream' or 'admin'",
        )
    settings = state.settings
    if state.active_streams >= settings.max_streams:
        state.metrics.refusals.labels("stream", "max_streams").inc()
        raise Close(
            CloseCode.TRY_AGAIN_LATER,
            "too_many_streams",
            f"{state.active_streams} streams are open and the limit is {settings.max_streams}; retry later",
            settings.retry_after_s,
        )
    verdict = check_engine(state, "stream")
    if verdict.reason is not None:
        raise Close(
            CloseCode.TRY_AGAIN_LATER,
            "overloaded",
            f"{verdict.message}; this stream was not started so that the open ones keep their "
            f"latency; retry in {settings.retry_after_s} s (or on another replica)",
            settings.retry_after_s,
        )
    key = principal.limit_key
    if key is not None and state.streams_per_key.get(key) >= settings.max_streams_per_key:
        raise Close(
            CloseCode.TRY_AGAIN_LATER,
            "too_many_streams",
            f"this API key has {state.streams_per_key.get(key)} streams open and the limit per key is "
            f"{settings.max_streams_per_key}; close one or retry later",
        )
    state.stream_opened()
    if key is not None:
        state.streams_per_key.acquire(key)
    try:
        yield
    finally:
        if key is not None:
            state.streams_per_key.release(key)
        state.stream_ended()


async def refuse(ws: WebSocket, c: Close) -> None:
    """Send the refusal's ``error`` message and close (best effort: the client may be gone)."""
    state: AppState | None = getattr(ws.app.state, "openkws", None)
    if state is not None:
        state.metrics.errors.labels(c.error).inc()
        state.metrics.ws_sessions.labels(str(int(c.code))).inc()
    msg = ErrorMessage(code=c.error, message=c.message, close_code=int(c.code), retry_after_s=c.retry_after_s)
    # The close reason carries the hint too, for clients that only see the close frame.
    reason = c.error if c.retry_after_s is None else f"{c.error}; retry-after={c.retry_after_s}"
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send_text(msg.model_dump_json(exclude_none=True)), CLOSE_TIMEOUT_S)
        await asyncio.wait_for(ws.close(int(c.code), reason), CLOSE_TIMEOUT_S)

"""Admission control for websocket streams: who may open one, and the slot it holds while open.

REST routes get the same checks as FastAPI dependencies (``openkws.server.api.deps``); a websocket is
accepted first, so that a refusal can carry an ``error`` message before its close code, and is then
admitted here. :func:`stream_slot` is a context manager: the global and per-key counters are
released however the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.websockets import WebSocket

from openkws.protocol import CloseCode, ErrorMessage
from openkws.server.auth import Principal
from openkws.server.state import AppState

SHUTDOWN_MESSAGE = "the server is shutting down; reconnect (another replica, or this one once restarted)"
CLOSE_TIMEOUT_S = 2.0  # a close frame to a client that does not read must not hold the handler


class Close(Exception):
    """End a stream, or refuse one before it starts: an ``error`` message, then ``code``."""

    def __init__(self, code: CloseCode, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message


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
        raise Close(
            CloseCode.TRY_AGAIN_LATER,
            "too_many_streams",
            f"{state.active_streams} streams are open and the limit is {settings.max_streams}; retry later",
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
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            ws.send_text(
                ErrorMessage(code=c.error, message=c.message, close_code=int(c.code)).model_dump_json()
            ),
            CLOSE_TIMEOUT_S,
        )
        await asyncio.wait_for(ws.close(int(c.code), c.error), CLOSE_TIMEOUT_S)

"""Per-connection bounds below the app: websocket control frames and the write buffer.

uvicorn's sans-I/O websocket protocol answers each ping by writing a pong straight into the
transport. That write skips the flow control that app messages wait on. A transport closed with
data still queued keeps that data until the peer reads it. So a client that flooded pings and
never read grew the server by about the size of its flood. The memory stayed after the app had
dropped the client (issue 25: RSS +190 to +285 MB for 200 MiB of pings). None of uvicorn's
websocket options bound this: ``ws_max_size`` limits messages, ``ws_ping_*`` are the server's own
pings, and ``ws_max_queue`` / websockets' ``write_limit`` belong to the other implementations.
:class:`BoundedProtocol` adds three bounds:

* Every control frame a client sends (ping, pong, close) is charged to a byte budget, counted as
  payload plus the 6 header bytes of a masked control frame. The budget allows
  ``ws_control_budget_bytes`` at once and refills at ``ws_control_refill_bytes_per_s``. Charging
  starts at the first frame after the upgrade request, so it applies before authentication as well
  as after. Past the budget the client gets an ``error`` (``control_frame_budget``) and close 1008,
  reads stop, and the connection is aborted :data:`BUDGET_LINGER_S` later.
* A ping is not answered while more than the transport's high-water mark waits unsent. The peer is
  not reading, so it would not see the pong anyway.
* If a closed connection still has unsent data when its close timeout ends, it is aborted.
  ``abort`` frees the write buffer at once; ``close`` would keep it until the peer reads.

Example:
    >>> cost = control_frame_cost(b"x" * 125)
    >>> cost, (64 << 10) // cost  # max-size pings in the default budget
    (131, 500)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, TypeVar, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from openkws.protocol import CloseCode, ErrorMessage
from openkws.server.limits import TokenBucket
from openkws.settings import Settings

log = logging.getLogger("openkws")

CONTROL_OPCODES = frozenset({Opcode.PING, Opcode.PONG, Opcode.CLOSE})
CONTROL_HEADER_BYTES = 6  # 2-byte header + 4-byte mask: a client's control frame (payload <= 125)
BUDGET_LINGER_S = 2.0  # time for the error and close frame to go out before the abort
BUDGET_ERROR = "control_frame_budget"
P = TypeVar("P", bound="BoundedProtocol")


def control_frame_cost(payload: bytes | bytearray | memoryview) -> int:
    return len(payload) + CONTROL_HEADER_BYTES


class _ChargedConnection(ServerProtocol):
    """websockets' server state machine, with control frames charged to the owner's budget and
    pongs held back while the owner's transport does not drain."""

    def __init__(self, owner: BoundedProtocol, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode in CONTROL_OPCODES:
            if not self.owner.charge(control_frame_cost(frame.data)):
                return  # dropped; the owner fails the connection after this read
            if frame.opcode is Opcode.PING and not self.owner.writable.is_set():
                self.owner.pongs_held += 1
                return
        super().recv_frame(frame)


class BoundedProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol with the bounds above; :meth:`configured` binds the settings."""

    control_budget_bytes: ClassVar[int] = Settings.model_fields["ws_control_budget_bytes"].default
    control_refill_bytes_per_s: ClassVar[float] = Settings.model_fields[
        "ws_control_refill_bytes_per_s"
    ].default

    @classmethod
    def configured(cls: type[P], settings: Settings) -> type[P]:
        """A subclass with ``settings``' budget (uvicorn builds one protocol per connection from a class)."""
        attrs = {
            "__module__": cls.__module__,
            "control_budget_bytes": settings.ws_control_budget_bytes,
            "control_refill_bytes_per_s": settings.ws_control_refill_bytes_per_s,
        }
        return cast(type[P], type(cls.__name__, (cls,), attrs))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = TokenBucket(self.control_refill_bytes_per_s, self.control_budget_bytes)
        self.over_budget = False
        self.pongs_held = 0
        self.abort_timer: asyncio.TimerHandle | None = None
        self.conn = _ChargedConnection(
            self,
            extensions=self.conn.available_extensions,
            max_size=self.config.ws_max_size,
            logger=logging.getLogger("uvicorn.error"),
        )

    def charge(self, cost: int) -> bool:
        if not self.over_budget and self.budget.take(cost=cost) > 0.0:
            self.over_budget = True
        return not self.over_budget

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.over_budget and not self.transport.is_closing():
            self._fail_over_budget()

    def _fail_over_budget(self) -> None:
        message = (
            f"more than {self.control_budget_bytes} bytes of websocket control frames (ping, pong, "
            f"close; refilled at {self.control_refill_bytes_per_s:g} bytes/s); the connection is closed"
        )
        log.warning("websocket from %s: %s", _peer(self.client), message)
        if self.handshake_complete and self.initial_response is None and self.conn.state is State.OPEN:
            code = int(CloseCode.POLICY_VIOLATION)
            # The final message goes out before the close frame, in case the peer reads after all.
            error = ErrorMessage(code=BUDGET_ERROR, message=message, close_code=code)
            self.conn.send_text(error.model_dump_json().encode())
            self.conn.fail(code, BUDGET_ERROR)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": BUDGET_ERROR})
            self.transport.close()  # stops the reads at once
            self.abort_later(BUDGET_LINGER_S)
        else:  # before the handshake, or already closing: nothing left to tell the peer
            self.transport.abort()

    def abort_later(self, delay_s: float) -> None:
        if self.abort_timer is None:
            self.abort_timer = self.loop.call_later(delay_s, self._abort_if_open)

    def _abort_if_open(self) -> None:
        self.abort_timer = None
        if not self.disconnected:
            self.transport.abort()

    def _close_or_abort(self) -> None:
        """The close timeout ended: close, or abort when the peer has not read what is queued."""
        self.close_timer = None
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_or_abort)

    async def run_asgi(self) -> None:
        await super().run_asgi()
        if self.close_timer is None:  # uvicorn closed the transport; it may still hold unsent data
            self.abort_later(self.close_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        super().connection_lost(exc)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"

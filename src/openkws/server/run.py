"""Running the app under uvicorn with the service's limits and a graceful SIGTERM.

uvicorn's own shutdown closes every open websocket at once with 1012 and no final message. The
:class:`GracefulServer` first stops accepting connections, then lets every open stream flush its
audio, send its ``summary`` and close with 1001 (``AppState.drain``), waits for the clients' close
replies (:meth:`GracefulServer.closing_handshakes`), and only then runs uvicorn's shutdown, which
waits for in-flight HTTP requests (up to ``shutdown_timeout_s``) and then the lifespan shutdown. A second SIGINT forces the exit, as with plain uvicorn.

Websockets run on :class:`KeepaliveProtocol`, uvicorn's sans-I/O websocket protocol with one
change: a ping whose pong is late while the *server* has paused reading (a stream's audio backlog,
``max_pending_seconds``) does not fail the connection. The pong sits in TCP behind audio the client
already sent, which proves the client is alive; the deadline restarts and the stream keeps its
results. A peer that stays silent while the server reads gets an ``error`` message
(``keepalive_timeout``) and close 4011, never 1011 (which means a server bug).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from openkws.protocol import CloseCode, ErrorMessage
from openkws.server.admission import CLOSE_TIMEOUT_S
from openkws.server.app import create_app
from openkws.server.auth import redact
from openkws.server.ws_bounds import BoundedProtocol
from openkws.settings import Settings

log = logging.getLogger("openkws")


class _RedactTokens(logging.Filter):
    """uvicorn logs request lines with their query string: hide ``?token=`` values.

    Arguments are redacted one by one and keep their shape: uvicorn's access formatter unpacks
    ``record.args`` as a 5-tuple, so replacing them would break every access line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


KEEPALIVE_MESSAGE = (
    "no answer to a websocket ping for {:g} s while the server was reading; the connection is closed"
)


class KeepaliveProtocol(BoundedProtocol):
    """uvicorn's websocket protocol with the control-frame and write-buffer bounds of
    :mod:`openkws.server.ws_bounds`, and pong deadlines that only count while the server reads.

    uvicorn pauses reading after each message until the app takes it; the app takes the next audio
    frame only when its backlog is under ``max_pending_seconds``. Meanwhile a pong cannot be read
    (it is queued in TCP behind audio), so a plain keepalive cuts fast senders. Here the deadline is
    re-armed when reads were paused by the server at any time since the ping: the peer delivered
    whole messages, so it is alive.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paused_since_ping = False

    def send_receive_event_to_app(self) -> None:
        super().send_receive_event_to_app()
        if self.read_paused:
            self.paused_since_ping = True

    def send_keepalive_ping(self) -> None:
        self.paused_since_ping = self.read_paused
        super().send_keepalive_ping()

    def keepalive_timeout(self) -> None:
        if self.read_paused or self.paused_since_ping:  # our backlog holds the pong: wait again
            self.paused_since_ping = self.read_paused
            assert self.ping_timeout is not None
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
            return
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        code = int(CloseCode.KEEPALIVE_TIMEOUT)
        message = KEEPALIVE_MESSAGE.format(self.ping_timeout or 0.0)
        # The final message goes out before the close frame, in case the peer still reads.
        self.conn.send_text(
            ErrorMessage(code="keepalive_timeout", message=message, close_code=code)
            .model_dump_json()
            .encode()
        )
        self.conn.fail(code, "keepalive_timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": "keepalive_timeout"})
        self.transport.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def warn_if_exposed(settings: Settings) -> bool:
    """Log a loud WARNING when auth is off on a non-loopback address; True when it warned."""
    if settings.auth or is_loopback(settings.host):
        return False
    log.warning(
        "\n%s\nAUTHENTICATION IS OFF while listening on %s: anyone who can reach this port can enroll, delete and "
        "detect keywords. Set OPENKWS_AUTH=on and create keys with `openkws keys create --tenant T --scope admin`, "
        "or bind to 127.0.0.1.\n%s",
        "!" * 100,
        settings.host,
        "!" * 100,
    )
    return True


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self.app = app
        self.settings = settings

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # no new connections while the streams drain
            server.close()
        state = getattr(self.app.state, "openkws", None)
        if state is not None:
            log.info("shutting down: %d open stream(s) get their summary", state.active_streams)
            await state.drain(self.settings.shutdown_timeout_s)
            await self.closing_handshakes(CLOSE_TIMEOUT_S)
        await super().shutdown(sockets)

    async def closing_handshakes(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every websocket that sent its close frame has the
        client's reply. uvicorn's shutdown closes such a connection at once; with the client's audio
        still unread the kernel resets it, the client's close reply fails to send, and websockets'
        sync client then drops the frames it read with the close: the summary and the last
        detections (a CI failure, 1 stream in 25 under load)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and any(
            getattr(c, "close_sent", False) and not getattr(c, "disconnected", True)
            for c in self.server_state.connections
        ):
            await asyncio.sleep(0.02)


def make_server(app: FastAPI, settings: Settings, log_level: str = "info") -> GracefulServer:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # The handler answers a message up to 2x max_frame_bytes with a readable 1009 error; larger
        # ones are refused by the websocket layer itself (also 1009). The protocol pauses reading
        # after each message until the app takes it: one message waits per connection.
        ws=KeepaliveProtocol.configured(settings),  # the control-frame budget: openkws.server.ws_bounds
        ws_max_size=2 * settings.max_frame_bytes,
        ws_per_message_deflate=False,  # audio does not compress; no inflate work for clients to trigger
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_RedactTokens())
    return GracefulServer(config, app, settings)


def run(settings: Settings, log_level: str = "info") -> None:
    """``openkws serve``: build the app and serve it until SIGTERM/SIGINT; with more than one
    worker (``OPENKWS_WORKERS``, default one per core), N engine processes share the port."""
    warn_if_exposed(settings)
    n = settings.resolved_workers()
    if n == 1:
        make_server(create_app(settings), settings, log_level).run()
        return
    from openkws.server.workers import run_workers  # lazy: workers imports this module (make_server)

    code = run_workers(settings, n, log_level)
    if code:
        raise SystemExit(code)  # a worker did not drain cleanly

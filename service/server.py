"""Running the app under uvicorn with the service's limits and a graceful SIGTERM.

uvicorn's own shutdown closes every open websocket at once with 1012 and no final message. The
:class:`GracefulServer` first stops accepting connections, then lets every open stream flush its
audio, send its ``summary`` and close with 1001 (``AppState.drain``), and only then runs uvicorn's
shutdown, which waits for in-flight HTTP requests (up to ``shutdown_timeout_s``) and then the
lifespan shutdown. A second SIGINT forces the exit, as with plain uvicorn.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket

import uvicorn
from fastapi import FastAPI

from .auth import redact
from .settings import Settings

log = logging.getLogger("openkws")


class _RedactTokens(logging.Filter):
    """uvicorn logs websocket request lines with their query string: hide ``?token=`` values."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


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
        "or bind to 127.0.0.1.\n%s", "!" * 100, settings.host, "!" * 100)
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
        await super().shutdown(sockets)


def make_server(app: FastAPI, settings: Settings, log_level: str = "info") -> GracefulServer:
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level,
        # The handler answers a message up to 2x max_frame_bytes with a readable 1009 error; larger
        # ones are refused by the websocket layer itself (also 1009). At most ws_max_queue of them
        # wait per connection, so socket-level buffering is bounded too.
        ws_max_size=2 * settings.max_frame_bytes, ws_max_queue=settings.ws_max_queue,
        ws_per_message_deflate=False,  # audio does not compress; no inflate work for clients to trigger
        ws_ping_interval=20, ws_ping_timeout=20,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_RedactTokens())
    return GracefulServer(config, app, settings)


def run(settings: Settings, log_level: str = "info") -> None:
    """``openkws serve``: build the app and serve it until SIGTERM/SIGINT."""
    from .app import create_app

    warn_if_exposed(settings)
    make_server(create_app(settings), settings, log_level).run()

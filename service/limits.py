"""Request body size limit, enforced before FastAPI parses (and spools) a body.

``POST /v1/detect`` may carry ``max_upload_bytes`` (plus multipart overhead); every other request
at most ``JSON_BODY_LIMIT`` bytes. A declared ``Content-Length`` over the limit is refused at once;
a chunked body is counted as it arrives and refused when it crosses the limit.
"""

from __future__ import annotations

import json

from service.metrics import ASGIApp, Message, Metrics, Receive, Scope, Send
from service.settings import Settings

JSON_BODY_LIMIT = 4 << 20
MULTIPART_OVERHEAD = 64 << 10


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    def limit(self, path: str) -> int:
        if path.rstrip("/") == "/v1/detect":
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return JSON_BODY_LIMIT

    async def _refuse(self, send: Send, limit: int) -> None:
        self.metrics.errors.labels("body_too_large").inc()
        body = json.dumps({"error": {"code": "body_too_large",
                                     "message": f"request body exceeds {limit} bytes; send at most {limit} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(str(scope.get("path", "")))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(send, limit)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit)

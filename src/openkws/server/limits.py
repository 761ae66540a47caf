"""Limits at the edge: request body size, per-key enrollment rate, per-key concurrent streams.

Body size is enforced before FastAPI parses (and spools) a body: ``POST /v1/detect`` may carry
``max_upload_bytes`` (plus multipart overhead); every other request at most ``max_body_bytes``. A
declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
arrives and refused when it crosses the limit. Both answer ``413 body_too_large`` and count in
``openkws_errors_total{code="body_too_large"}``: FastAPI wraps an error raised while it reads a
body into a 400, so the error handlers unwrap :class:`BodyTooLarge` (``openkws.server.api.errors``), and
this middleware replaces any other answer the app gives after the limit was crossed.

Example:
    >>> b = TokenBucket(rate=2.0, burst=2, now=0.0)
    >>> [b.take(now=0.0), b.take(now=0.0), b.take(now=0.0)]
    [0.0, 0.0, 0.5]
    >>> b.take(now=0.5)  # one token refilled after 1/rate s
    0.0
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict

from openkws.server.metrics import ASGIApp, Message, Metrics, Receive, Scope, Send
from openkws.settings import Settings

MULTIPART_OVERHEAD = 64 << 10


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`take` returns 0.0 when ``cost``
    tokens (default one) were taken, else the seconds until they will be available (nothing is
    taken then)."""

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None, cost: float = 1.0) -> float:
        t = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per key, thread-safe. At most ``max_keys`` buckets are kept (least
    recently used dropped first: a dropped bucket was idle, so it would be full anyway)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = TokenBucket(self.rate, self.burst)
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return b.take()


class StreamCounter:
    """Open streams per key (event-loop only); keys with no stream are forgotten."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def get(self, key: str) -> int:
        return self._open.get(key, 0)

    def acquire(self, key: str) -> None:
        self._open[key] = self._open.get(key, 0) + 1

    def release(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body crosses ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes; send at most {limit} bytes")
        self.limit = limit


def too_large_body(limit: int) -> bytes:
    return json.dumps({"error": {"code": "body_too_large", "message": str(BodyTooLarge(limit))}}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    def limit(self, path: str) -> int:
        if path.rstrip("/") == "/v1/detect":
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return self.settings.max_body_bytes

    async def _refuse(self, send: Send, limit: int) -> None:
        self.metrics.errors.labels("body_too_large").inc()
        body = too_large_body(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
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
        started = crossed = False

        async def limited_receive() -> Message:
            nonlocal received, crossed
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    crossed = True
                    raise BodyTooLarge(limit)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if crossed and not started and msg["type"] == "http.response.start" and msg["status"] != 413:
                raise BodyTooLarge(limit)  # the app answered something else for a body it could not read
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, limit)

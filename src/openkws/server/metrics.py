"""Prometheus metrics of one app instance, in its own :class:`CollectorRegistry` (never the global
one), so several apps can live in one process (tests) without clashing. With ``--workers N`` a
worker's values go to files shared by the workers instead, and ``/metrics`` merges them
(:mod:`openkws.server.metrics_shared`); every gauge therefore says how workers combine
(``multiprocess_mode``, ignored by a single process): ``livesum`` where the server's value is the
workers' total, ``livemax`` where the worst worker is the one that matters (or every worker holds the
same value), ``livemin`` where the laggard is.

All names start with ``openkws_``; docs/SERVICE.md lists them. Labels are bounded: no label holds
a keyword id or a tenant (a label per keyword adds series with every keyword ever detected, and
shows every tenant's ids to whoever reads ``/metrics``). Per-keyword counts live in
:mod:`openkws.server.detection_counts`, served per tenant by ``GET /v1/detections/counts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from openkws.server.metrics_shared import SAMPLE_S, ProcessMirror, shared_registry

log = logging.getLogger("openkws")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Every (source, reason) admission control can refuse with (server/admission.py). Their series are
# exported at 0 from the start: a labelled counter has no series until its first increment, so the
# dashboard's refusal panel had no data on a healthy replica ("No data" reads as "not scraped").
REFUSALS = (
    ("stream", "backlog"),
    ("stream", "latency_budget"),
    ("stream", "max_streams"),
    ("detect", "backlog"),
    ("detect", "latency_budget"),
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LoadReading(Protocol):
    """What the engine gauges read (:class:`openkws.server.batcher.EngineLoad`)."""

    @property
    def cost(self) -> float | None: ...
    @property
    def step_s(self) -> float | None: ...
    def utilisation(self, streams: int) -> float: ...
    def backlog_s(self, now: float | None = None) -> float: ...


class Metrics:
    """``shared_dir``: the ``--workers`` metrics directory (:mod:`openkws.server.metrics_shared`);
    :meth:`render` then answers for every worker. None: this app's own registry."""

    def __init__(self, shared_dir: str | None = None) -> None:
        # first: refuses at once when this process's values would never reach the shared files
        shared = shared_registry(shared_dir) if shared_dir is not None else None
        r = self.registry = CollectorRegistry(auto_describe=True)
        # Gauges read when scraped (a function gauge never reaches the shared files): see sample()
        self._sampled: list[tuple[Gauge, Callable[[], float]]] = []
        self.http_requests = Counter(
            "openkws_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "openkws_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_sessions = Counter(
            "openkws_websocket_sessions_total", "Websocket streams by close code", ["close_code"], registry=r
        )
        self.ws_duration = Histogram(
            "openkws_websocket_session_duration_seconds",
            "Websocket stream duration",
            buckets=(0.1, 1, 5, 15, 60, 300, 1800, 3600),
            registry=r,
        )
        self.active_streams = Gauge(
            "openkws_active_streams", "Open websocket streams", multiprocess_mode="livesum", registry=r
        )
        self.audio_seconds = Counter(
            "openkws_audio_seconds_total",
            "Stream audio the engine consumed (seconds of input, VAD-dropped audio included)",
            ["source"],
            registry=r,
        )
        self.batch_size = Histogram(
            "openkws_inference_batch_size", "Streams per inference batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_latency = Histogram(
            "openkws_inference_batch_seconds", "Inference time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "openkws_inference_queue_wait_seconds",
            "Time a job waited for a batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "openkws_inference_queue_depth",
            "Jobs waiting for a batch",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.detections = Counter(
            "openkws_detections_total", "Detections by source (stream | detect)", ["source"], registry=r
        )
        # every worker holds the whole index: the most up-to-date one, not N times it
        self.keywords = Gauge(
            "openkws_enrolled_keywords", "Keywords in the index", multiprocess_mode="livemax", registry=r
        )
        self.errors = Counter(
            "openkws_errors_total", "Client and server errors by code", ["code"], registry=r
        )
        # a gauge at 1 rather than an Info, which has no multiprocess mode; the exposition is the same
        self.model = Gauge(
            "openkws_model_info",
            "Loaded model and backends",
            ["model_version", "frontend", "embedding_dim", "onnx_backend", "index_backend", "database"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.enroll_latency = Histogram(
            "openkws_enrollment_seconds", "Time to enroll one request", buckets=LATENCY_BUCKETS, registry=r
        )
        self.detection_latency = Histogram(
            "openkws_detection_latency_seconds",
            "Streamed detections: end of the keyword's window to the event (decision delay + decode time)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refusals = Counter(
            "openkws_admission_refusals_total",
            "Streams and uploads refused by admission control, by source (stream | detect) and reason "
            "(backlog | latency_budget | max_streams)",
            ["source", "reason"],
            registry=r,
        )
        for source, reason in REFUSALS:
            self.refusals.labels(source, reason)
        self.engine_backlog = Gauge(
            "openkws_engine_backlog_seconds",
            "Worst engine lag of the last second: the oldest queued audio's wait at a step's start plus the step",
            multiprocess_mode="livemax",  # the worst worker: its streams wait that long
            registry=r,
        )
        self.engine_utilisation = Gauge(
            "openkws_engine_utilisation",
            "Share of the inference workers' time the open streams take (measured cost x streams / workers)",
            multiprocess_mode="livemax",  # the busiest worker: it refuses first
            registry=r,
        )
        self.engine_cost = Gauge(
            "openkws_engine_cost_seconds_per_stream_second",
            "Inference worker wall time per second of stream audio (recent, decayed)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.engine_step = Gauge(
            "openkws_engine_step_seconds",
            "Mean wall time of one batched engine step (recent)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.worker_sync = Histogram(
            "openkws_worker_sync_seconds",
            "--workers: how long a keyword write waited for every worker to apply it before its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_sync_timeouts = Counter(
            "openkws_worker_sync_timeouts_total",
            "--workers: keyword writes answered before every worker applied them (worker_sync_timeout_s)",
            registry=r,
        )
        self.workers = Gauge(
            "openkws_workers",
            "Engine worker processes serving this port (1 without --workers)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.workers.set(1)
        self.shared = shared is not None
        self._process: ProcessMirror | None = None
        if shared is None:
            ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
            self._scraped = r
        else:
            self._process = ProcessMirror(r)  # the same names, summed over the workers
            self._scraped = shared

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """``gauge`` takes the value of ``read()`` at each scrape (and each :meth:`sample`)."""
        self._sampled.append((gauge, read))

    def watch_engine(self, load: LoadReading, streams: Callable[[], int]) -> None:
        """The engine gauges read ``load`` at scrape time (``streams``: open streams now)."""
        self.watch(self.engine_backlog, lambda: load.backlog_s())
        self.watch(self.engine_utilisation, lambda: load.utilisation(streams()))
        self.watch(self.engine_cost, lambda: load.cost or 0.0)
        self.watch(self.engine_step, lambda: load.step_s or 0.0)

    def set_model(self, labels: dict[str, str]) -> None:
        self.model.labels(**labels).set(1)

    def sample(self) -> None:
        """Set the gauges read at scrape time (with ``--workers``: write them to the shared files)."""
        for gauge, read in self._sampled:
            gauge.set(read())
        if self._process is not None:
            self._process.sample()

    async def sample_every(self, period_s: float = SAMPLE_S) -> None:
        """With ``--workers``, until cancelled: keep this worker's sampled gauges at most ``period_s``
        old, for the scrapes that another worker answers."""
        while True:
            await asyncio.sleep(period_s)
            try:
                self.sample()
            except Exception:  # a failing reading must not end the sampling for good
                log.exception("sampling the metrics failed")

    def render(self) -> bytes:
        self.sample()
        return generate_latest(self._scraped)


def route_label(scope: Scope) -> str:
    """The matched route template (bounded label cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class HTTPMetricsMiddleware:
    """Pure ASGI middleware (keeps websockets untouched): count and time every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_label(scope)
            method = str(scope.get("method", ""))
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_latency.labels(method, route).observe(time.perf_counter() - start)

"""The application factory: ``create_app(settings)`` is the single entry point of the service.

Nothing is loaded at import time. The lifespan handler loads the model (checking its contract and
file hashes; a mismatched or modified model refuses to start), opens the keyword store, checks the
index against it (rebuilding it) and starts the micro-batcher; on shutdown it lets open streams end
with a summary, stops the batcher and closes the store. ``openkws.server.run`` runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from openkws import __version__
from openkws.engine.model_spec import ModelContractError
from openkws.server.api import detect, health, keys, keywords, stream
from openkws.server.api.errors import install_error_handlers
from openkws.server.detection_counts import DetectionCounts, SharedCounts
from openkws.server.limits import BodyLimitMiddleware
from openkws.server.metrics import (
    ASGIApp,
    HTTPMetricsMiddleware,
    Message,
    Metrics,
    Receive,
    Scope,
    Send,
)
from openkws.server.registry_sync import following
from openkws.server.sessions import warm_up
from openkws.server.state import AppState, load_engine, make_batcher
from openkws.server.worker_sync import AckMiddleware, WorkerBoard
from openkws.settings import Settings
from openkws.text import G2P

log = logging.getLogger("openkws")
STATIC_DIR = Path(__file__).parent / "static"  # the web demo (docs/DEPLOY.md)


class StartupRefused(RuntimeError):
    """Settings that contradict each other; the message says how to fix them."""


def check_settings(settings: Settings) -> None:
    """Refuse settings whose promise the server cannot keep, rather than serve something else."""
    if settings.metrics_auth and not settings.auth:
        raise StartupRefused(
            "OPENKWS_METRICS_AUTH=on needs OPENKWS_AUTH=on: with auth off there are no API keys, so "
            "/metrics would be open to anyone. Set OPENKWS_AUTH=on (the scraper sends an admin key), "
            "or unset OPENKWS_METRICS_AUTH and keep /metrics off the public network"
        )


class WorkerHeader:
    """Pure ASGI middleware: with ``--workers N`` behind one port, every HTTP response and websocket
    accept names the worker that served it (``X-OpenKWS-Worker: <0..N-1>``)."""

    def __init__(self, app: ASGIApp, worker_id: int) -> None:
        self.app = app
        self.header = (b"x-openkws-worker", str(worker_id).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, with_header)


def create_app(
    settings: Settings | None = None,
    g2p: G2P | None = None,
    board: WorkerBoard | None = None,
    metrics_dir: str | None = None,
) -> FastAPI:
    """Build the app. ``g2p`` lets a caller share one loaded G2P (its dictionary takes ~2 s to load)
    between app instances, e.g. in tests; by default each app loads its own. ``board`` and
    ``metrics_dir``: set by the ``--workers`` supervisor for worker ``settings.worker_id``
    (read-your-writes across workers, :mod:`openkws.server.worker_sync`; one ``/metrics`` for all
    workers, :mod:`openkws.server.metrics_shared`)."""
    settings = settings or Settings()
    metrics = Metrics(shared_dir=metrics_dir)
    counts = DetectionCounts()
    # --workers: every worker's detection counts, through the metrics directory
    shared_counts = SharedCounts(counts, Path(metrics_dir)) if metrics_dir is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            check_settings(settings)
            spotter, store, registry = await run_in_threadpool(load_engine, settings, metrics, counts, g2p)
        except (ModelContractError, StartupRefused) as e:
            log.error("openkws refuses to start: %s", e)
            raise
        batcher = make_batcher(settings, spotter, metrics)
        await run_in_threadpool(warm_up, spotter, batcher.load)  # admission has a cost from the start
        batcher.start()
        state = AppState(settings, metrics, spotter, store, registry, batcher, counts, shared_counts)
        metrics.watch_engine(batcher.load, lambda: state.active_streams)
        # with --workers, the scrapes other workers answer read this worker's sampled gauges
        sampler = asyncio.create_task(metrics.sample_every()) if metrics.shared else None
        # ... and the counts requests they answer read this worker's detection counts
        writer = asyncio.create_task(shared_counts.write_every()) if shared_counts is not None else None
        app.state.openkws = state
        try:
            async with following(state, board) as nudges:  # a worker's first sync runs here
                app.state.nudges = nudges
                try:
                    yield
                finally:
                    await state.drain(settings.shutdown_timeout_s)  # no-op when the server already drained
                    app.state.nudges = None
        finally:
            if sampler is not None:
                sampler.cancel()
            await batcher.stop()
            if writer is not None and shared_counts is not None:
                writer.cancel()
                await run_in_threadpool(shared_counts.close)  # the drained streams' detections too
            store.close()
            app.state.openkws = None

    app = FastAPI(
        title="openkws",
        version=__version__,
        summary="Open-vocabulary keyword spotting: enroll keywords as text, detect them in live audio.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.openkws = None
    app.state.nudges = None
    install_error_handlers(app, metrics, settings.db_retry_after_s)
    for r in (keywords.router, keys.router, detect.router, stream.router, health.router):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    if board is not None:  # inside the HTTP metrics: a write's duration includes waiting for the workers
        app.add_middleware(
            AckMiddleware,
            nudges=lambda: app.state.nudges,
            timeout_s=settings.worker_sync_timeout_s,
            metrics=metrics,
        )
    app.add_middleware(BodyLimitMiddleware, settings=settings, metrics=metrics)
    app.add_middleware(HTTPMetricsMiddleware, metrics=metrics)
    if settings.worker_id is not None:
        app.add_middleware(WorkerHeader, worker_id=settings.worker_id)
    return app

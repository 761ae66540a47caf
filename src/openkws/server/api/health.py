"""``/healthz`` (process alive), ``/readyz`` (models and index loaded; backends, the ONNX execution providers
in use against the requested device) and ``/metrics``.

With the database away, ``/readyz`` answers 200 with ``status: degraded``: the replica still detects
(from its in-memory index) and authenticates recently seen keys, so a balancer keeps streams on it.
A balancer that routes writes asks ``/readyz?role=write`` and gets 503 while degraded."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from openkws.server.api.deps import metrics_access
from openkws.server.api.schemas import Backends, DeviceReport, ReadyResponse
from openkws.server.state import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


DB_MAX_AGE_S = 2.0  # readyz pings the database only when no call has seen it for this long


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"description": "starting or draining; or degraded, for role=write"}},
)
def readyz(
    request: Request,
    role: Literal["read", "write"] = Query(
        "read",
        description="'write': 503 while the database is unavailable (route writes elsewhere); "
        "'read' (default): 200 with status 'degraded', since detection still works",
    ),
) -> Any:
    state: AppState | None = getattr(request.app.state, "openkws", None)
    if state is None or state.draining:
        status = "draining" if state is not None else "starting"
        return JSONResponse(
            {"error": {"code": "not_ready", "message": f"the service is {status}"}}, status_code=503
        )
    db_ok = state.store.available(DB_MAX_AGE_S)
    if not db_ok and role == "write":
        return JSONResponse(
            {
                "error": {
                    "code": "degraded",
                    "message": "the keyword database is unavailable: writes answer 503; detection works "
                    f"({state.store.health.error})",
                }
            },
            status_code=503,
        )
    sp = state.spotter
    prov = sp.sessions.providers
    return ReadyResponse(
        status="ready" if db_ok else "degraded",
        database_error=None if db_ok else state.store.health.error,
        model_version=sp.spec.model_version,
        frontend=sp.spec.frontend,
        backend=Backends(onnx=sp.onnx_backend, index=sp.index_backend, database=state.store.backend),
        device=DeviceReport(
            requested=prov.requested,
            onnx_providers=list(prov.names),
            fallback=prov.fallback,
            warning=prov.warning,
        ),
        keywords=state.registry.total(),
        active_streams=state.active_streams,
        max_streams=state.settings.max_streams,
        queue_depth=state.batcher.depth,
        backlog_ms=round(1000.0 * state.batcher.load.backlog_s(), 1),
        engine_utilisation=round(state.batcher.load.utilisation(state.active_streams), 3),
    )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
def metrics(request: Request) -> Response:
    """Prometheus text; with ``OPENKWS_METRICS_AUTH=on`` (and auth on) only for admin keys."""
    m = request.app.state.metrics
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

"""``/healthz`` (process alive), ``/readyz`` (models and index loaded; backends, the ONNX execution providers
in use against the requested device) and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from openkws.server.api.deps import metrics_access
from openkws.server.api.schemas import Backends, DeviceReport, ReadyResponse
from openkws.server.state import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"description": "starting or draining"}})
def readyz(request: Request) -> Any:
    state: AppState | None = getattr(request.app.state, "openkws", None)
    if state is None or state.draining:
        status = "draining" if state is not None else "starting"
        return JSONResponse(
            {"error": {"code": "not_ready", "message": f"the service is {status}"}}, status_code=503
        )
    sp = state.spotter
    prov = sp.sessions.providers
    return ReadyResponse(
        status="ready",
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

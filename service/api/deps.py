"""Typed FastAPI dependencies (``SpotterDep = Annotated[Spotter, Depends(get_spotter)]``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from service.api.errors import ApiError
from service.engine.spotter import DEFAULT_TENANT, Spotter
from service.keywords import KeywordService
from service.metrics import Metrics
from service.settings import Settings
from service.state import AppState


def get_state(conn: HTTPConnection) -> AppState:
    state: AppState | None = getattr(conn.app.state, "openkws", None)
    if state is None:
        raise ApiError(503, "not_ready", "the service is still starting; retry in a few seconds")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_spotter(state: StateDep) -> Spotter:
    return state.spotter


def get_keywords(state: StateDep) -> KeywordService:
    return state.keywords


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def get_tenant() -> str:
    """The caller's tenant. Every request is ``default`` until API keys arrive (issue 7)."""
    return DEFAULT_TENANT


SettingsDep = Annotated[Settings, Depends(get_settings)]
SpotterDep = Annotated[Spotter, Depends(get_spotter)]
KeywordsDep = Annotated[KeywordService, Depends(get_keywords)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TenantDep = Annotated[str, Depends(get_tenant)]

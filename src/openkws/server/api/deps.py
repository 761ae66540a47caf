"""Typed FastAPI dependencies (``SpotterDep = Annotated[Spotter, Depends(get_spotter)]``).

:func:`get_principal` is the single place that turns a request into a caller: with
``OPENKWS_AUTH=on`` from its ``Authorization: Bearer <api key>`` header (401 when missing or
invalid, 403 when the key's scope does not allow the route), with auth off the ``default`` tenant
with admin rights. Keyword management needs scope ``admin``; detection needs ``stream`` (or admin).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from openkws.engine.spotter import Spotter
from openkws.keywords.availability import StoreUnavailable
from openkws.keywords.registry import KeywordRegistry
from openkws.protocol import CloseCode
from openkws.server.admission import Close
from openkws.server.api.errors import ApiError
from openkws.server.auth import LOCAL, Principal, Scope, bearer_token, websocket_token
from openkws.server.metrics import Metrics
from openkws.server.state import AppState
from openkws.settings import Settings

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="openkws"'}
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="API key from `openkws keys create` (needed when OPENKWS_AUTH=on)",
)


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


def get_registry(state: StateDep) -> KeywordRegistry:
    return state.registry


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def authenticate(state: AppState, token: str | None) -> Principal:
    """The caller behind ``token`` (blocking: a database lookup). Raises 401 ``unauthorized``."""
    if not state.settings.auth:
        return LOCAL
    if not token:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' "
            "(create one with `openkws keys create --tenant T --scope admin|stream`)",
            headers=UNAUTHORIZED_HEADERS,
        )
    principal = state.api_keys.verify(token)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "the API key is invalid or revoked; `openkws keys list` shows the active keys",
            headers=UNAUTHORIZED_HEADERS,
        )
    return principal


def get_principal(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    return authenticate(state, credentials.credentials if credentials is not None else None)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def websocket_principal(state: AppState, ws: WebSocket, offered: list[str]) -> Principal:
    """The caller of a websocket (header, ``bearer.<key>`` subprotocol or ``?token=``); raises
    :class:`openkws.server.admission.Close` (4401) like the REST routes' 401."""
    if not state.settings.auth:
        return LOCAL
    try:
        token = websocket_token(ws.headers.get("authorization"), ws.query_params.get("token"), offered)
        return await run_in_threadpool(authenticate, state, token)
    except ApiError as e:
        raise Close(CloseCode.UNAUTHORIZED, e.code, e.message) from None
    except StoreUnavailable:  # a key not verified within api_key_cache_s, and no database to ask
        raise Close(
            CloseCode.TRY_AGAIN_LATER,
            "database_unavailable",
            "the API key cannot be checked while the keyword database is unavailable; retry in a few seconds",
        ) from None


def forbidden(principal: Principal, needed: Scope) -> ApiError:
    return ApiError(
        403,
        "forbidden",
        f"this API key has scope {principal.scope!r}; this operation needs "
        f"{needed!r} (scope 'admin' manages keywords and keys, 'stream' only detects)",
    )


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.allows("admin"):
        raise forbidden(principal, "admin")
    return principal


def require_stream(principal: PrincipalDep) -> Principal:
    if not principal.allows("stream"):
        raise forbidden(principal, "stream")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
StreamDep = Annotated[Principal, Depends(require_stream)]


def enroll_rate_limit(state: StateDep, principal: AdminDep) -> None:
    """Per-key token bucket on enrollment requests (keys exist only with auth on): 429 when empty."""
    key = principal.limit_key
    if key is None:
        return
    wait = state.enroll_limiter.take(key)
    if wait > 0:
        s = state.settings
        raise ApiError(
            429,
            "rate_limited",
            f"too many enrollment requests with this API key (at most {s.enroll_rate_per_s:g}/s, bursts of "
            f"{s.enroll_burst}); retry in {wait:.1f} s or enroll several keywords per batch request",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def metrics_access(request: HTTPConnection) -> None:
    """``/metrics`` with ``OPENKWS_METRICS_AUTH=on`` (and auth on): an API key with scope admin."""
    state: AppState | None = getattr(request.app.state, "openkws", None)
    if state is None or not (state.settings.auth and state.settings.metrics_auth):
        return
    principal = authenticate(state, bearer_token(request.headers.get("authorization")))
    if not principal.allows("admin"):
        raise forbidden(principal, "admin")


def get_tenant(principal: AdminDep) -> str:
    """The tenant whose keywords an admin call manages (``default`` with auth off)."""
    return principal.tenant


def get_stream_tenant(principal: StreamDep) -> str:
    """The tenant whose keywords a detection call matches."""
    return principal.tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
SpotterDep = Annotated[Spotter, Depends(get_spotter)]
RegistryDep = Annotated[KeywordRegistry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TenantDep = Annotated[str, Depends(get_tenant)]
StreamTenantDep = Annotated[str, Depends(get_stream_tenant)]

"""One error shape for every 4xx/5xx: ``{"error": {"code": ..., "message": ...}}``.

Messages say what was wrong and what is accepted, e.g.
``"threshold: Input should be less than or equal to 1 (got 1.5); accepted range [0, 1]"``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from openkws.engine.calibration import MAX_TARGET_FA_PER_HOUR, MIN_TARGET_FA_PER_HOUR
from openkws.keywords.availability import StoreUnavailable
from openkws.server.limits import BodyTooLarge, too_large_body
from openkws.server.metrics import Metrics

log = logging.getLogger("openkws")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


ECHO_CHARS = 40
_HINTS = {
    "threshold": "accepted range [0, 1]",
    "limit": "accepted range [1, 1000]",
    "target_fa_per_hour": f"accepted range [{MIN_TARGET_FA_PER_HOUR:g}, {MAX_TARGET_FA_PER_HOUR:g}] false alarms per hour",
}


def _describe(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    where = ".".join(loc) or "request body"
    text = f"{where}: {err.get('msg', 'invalid')}"
    if "input" in err and not isinstance(err["input"], dict | list) and err.get("type") != "missing":
        got = err["input"]
        if isinstance(got, str) and len(got) > ECHO_CHARS:  # never echo a long input back whole
            text += f" (got {got[:ECHO_CHARS]!r}… {len(got)} characters)"
        else:
            text += f" (got {got!r})"
    hint = _HINTS.get(loc[-1] if loc else "")
    return f"{text}; {hint}" if hint else text


def install_error_handlers(app: FastAPI, metrics: Metrics, retry_after_s: int = 5) -> None:
    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        # detection keeps running from the in-memory index; only the database's routes wait
        metrics.errors.labels("database_unavailable").inc()
        return JSONResponse(
            error_body(
                "database_unavailable",
                f"the keyword database is unavailable, so this request could not be completed; retry in "
                f"{retry_after_s} s (enrollment is idempotent: a retry is safe). Detection keeps working "
                "with the keywords already loaded.",
            ),
            status_code=503,
            headers={"Retry-After": str(retry_after_s)},
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.extra), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        errors = list(exc.errors())
        message = "; ".join(_describe(e) for e in errors[:5])
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse | Response:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wrapped our limit into "could not parse"
            metrics.errors.labels("body_too_large").inc()
            return Response(
                too_large_body(exc.__cause__.limit), status_code=413, media_type="application/json"
            )
        if exc.status_code == 400:  # FastAPI/Starlette body parsing (not UTF-8, broken multipart)
            metrics.errors.labels("invalid_request").inc()
            return JSONResponse(
                error_body(
                    "invalid_request",
                    f"the request body could not be parsed ({exc.detail}); "
                    "send UTF-8 JSON, or multipart/form-data with a 'file' part to /v1/detect",
                ),
                status_code=422,
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        metrics.errors.labels(code).inc()
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        metrics.errors.labels("internal_error").inc()
        return JSONResponse(
            error_body("internal_error", "internal server error; the request was not completed"),
            status_code=500,
        )

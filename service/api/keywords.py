"""``/v1/keywords``: enroll (single and batch), list, get, change threshold, delete.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so G2P, the text encoder, TTS
synthesis (``proxy`` ``tts``/``both``) and the database never block the event loop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from ..auth import Principal
from ..keywords import Enrolled, EnrollItem, InvalidKeywordText, KeywordService, TooManyKeywords
from ..sensitivity import NoCalibrationBank
from ..settings import Settings
from ..state import AppState
from ..store import KeywordNotFound, KeywordRecord
from ..text.tts import TTSError, TTSUnavailable
from .deps import AdminDep, KeywordsDep, MetricsDep, SettingsDep, StateDep, TenantDep
from .errors import ApiError
from .schemas import (
    ErrorResponse,
    KeywordBatchCreate,
    KeywordBatchOut,
    KeywordCreate,
    KeywordCreated,
    KeywordOut,
    KeywordPage,
    KeywordPatch,
)

router = APIRouter(prefix="/v1/keywords", tags=["keywords"])
ERRORS: dict[int | str, dict[str, object]] = {
    c: {"model": ErrorResponse} for c in (401, 403, 404, 413, 422)
}
ENROLL_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS, **{c: {"model": ErrorResponse} for c in (409, 429, 503)}}


MAX_ID = 2**63 - 1  # ids are signed 64-bit in every backend; a larger number is a 422, not a 500
KeywordId = Annotated[int, Path(ge=1, le=MAX_ID, description="keyword id")]


def _not_found(keyword_id: int) -> ApiError:
    return ApiError(404, "keyword_not_found", f"keyword {keyword_id} not found; GET /v1/keywords lists enrolled keywords")


def _check_metadata(items: Sequence[KeywordCreate], settings: Settings) -> None:
    for i, it in enumerate(items):
        if it.metadata is None:
            continue
        size = len(json.dumps(it.metadata, separators=(",", ":")))
        if size > settings.max_metadata_bytes:
            where = f"keywords[{i}].metadata" if len(items) > 1 else "metadata"
            raise ApiError(422, "metadata_too_large",
                           f"{where} is {size} bytes of JSON; at most {settings.max_metadata_bytes} are accepted")


def _rate_limit(state: AppState, principal: Principal) -> None:
    """Per-key token bucket on enrollment requests (keys exist only with auth on)."""
    key = principal.limit_key
    if key is None:
        return
    wait = state.enroll_limiter.take(key)
    if wait > 0:
        s = state.settings
        raise ApiError(429, "rate_limited",
                       f"too many enrollment requests with this API key (at most {s.enroll_rate_per_s:g}/s, bursts of "
                       f"{s.enroll_burst}); retry in {wait:.1f} s or enroll several keywords per batch request",
                       headers={"Retry-After": str(max(1, math.ceil(wait)))})


def _enroll(keywords: KeywordService, tenant: str, items: Sequence[KeywordCreate], batch: bool) -> list[Enrolled]:
    try:
        return keywords.enroll(tenant, [EnrollItem(i.text, i.threshold, i.metadata, i.proxy, i.target_fa_per_hour) for i in items])
    except TTSUnavailable as e:
        raise ApiError(503, "tts_unavailable", f"proxy 'tts' and 'both' need espeak-ng and flite, which this "
                       f"server cannot run ({e}); enroll with proxy 'text', or install them (OPENKWS_ESPEAK_BINARY "
                       "and OPENKWS_FLITE_BINARY name the executables)") from None
    except TTSError as e:
        raise ApiError(503, "tts_failed", f"speech synthesis for the acoustic proxy failed ({e}); retry, or "
                       "enroll with proxy 'text'") from None
    except TooManyKeywords as e:
        raise ApiError(409, "too_many_keywords", e.message) from None
    except NoCalibrationBank as e:
        raise ApiError(409, "no_calibration_bank", str(e)) from None
    except InvalidKeywordText as e:
        where = f"keywords[{e.position}].text" if batch else "text"
        raise ApiError(422, "invalid_keyword_text", f"{where}: {e.error.message}", rule=e.error.code,
                       position=e.position) from None


@router.post("", response_model=KeywordCreated, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": KeywordCreated, "description": "already enrolled (idempotent)"},
                        **ENROLL_ERRORS})
def create_keyword(body: KeywordCreate, response: Response, state: StateDep, keywords: KeywordsDep,
                   principal: AdminDep, tenant: TenantDep, settings: SettingsDep, metrics: MetricsDep) -> KeywordCreated:
    """Enroll one keyword; the same text again returns the existing keyword (200) unchanged."""
    _rate_limit(state, principal)
    t0 = time.perf_counter()
    _check_metadata([body], settings)
    (enrolled,) = _enroll(keywords, tenant, [body], batch=False)
    if not enrolled.created:
        response.status_code = status.HTTP_200_OK
    state.refresh_keyword_gauge()
    metrics.enroll_latency.observe(time.perf_counter() - t0)
    return KeywordCreated.from_enrolled(enrolled)


@router.post("/batch", response_model=KeywordBatchOut, responses=ENROLL_ERRORS)
def create_keywords(body: KeywordBatchCreate, state: StateDep, keywords: KeywordsDep, principal: AdminDep,
                    tenant: TenantDep, settings: SettingsDep, metrics: MetricsDep) -> KeywordBatchOut:
    """Enroll several keywords at once: all texts are validated first (all-or-nothing)."""
    _rate_limit(state, principal)
    if len(body.keywords) > settings.max_batch_keywords:
        raise ApiError(413, "batch_too_large",
                       f"{len(body.keywords)} keywords in one request; at most {settings.max_batch_keywords} are accepted")
    t0 = time.perf_counter()
    _check_metadata(body.keywords, settings)
    enrolled = _enroll(keywords, tenant, body.keywords, batch=True)
    state.refresh_keyword_gauge()
    metrics.enroll_latency.observe(time.perf_counter() - t0)
    return KeywordBatchOut(keywords=[KeywordCreated.from_enrolled(e) for e in enrolled])


@router.get("", response_model=KeywordPage, responses=ERRORS)
def list_keywords(keywords: KeywordsDep, tenant: TenantDep,
                  limit: int = Query(100, ge=1, le=1000, description="page size"),
                  after: int | None = Query(None, ge=0, le=MAX_ID, description="return keywords with id > after")) -> KeywordPage:
    items = keywords.page(tenant, after, limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return KeywordPage(items=[_out(keywords, tenant, r) for r in items], total=keywords.count(tenant),
                       next_after=items[-1].id if more and items else None)


@router.get("/{keyword_id}", response_model=KeywordOut, responses=ERRORS)
def get_keyword(keyword_id: KeywordId, keywords: KeywordsDep, tenant: TenantDep) -> KeywordOut:
    try:
        return _out(keywords, tenant, keywords.get(tenant, keyword_id))
    except KeywordNotFound:
        raise _not_found(keyword_id) from None


@router.patch("/{keyword_id}", response_model=KeywordOut, responses={**ERRORS, 409: {"model": ErrorResponse}})
def patch_keyword(keyword_id: KeywordId, body: KeywordPatch, keywords: KeywordsDep, tenant: TenantDep) -> KeywordOut:
    """Change the threshold (raw, or from `target_fa_per_hour`); running streams use it from their next decode."""
    try:
        if body.threshold is not None:
            return _out(keywords, tenant, keywords.set_threshold(tenant, keyword_id, body.threshold))
        assert body.target_fa_per_hour is not None  # the schema requires one of the two
        return _out(keywords, tenant, keywords.set_target(tenant, keyword_id, body.target_fa_per_hour))
    except KeywordNotFound:
        raise _not_found(keyword_id) from None
    except NoCalibrationBank as e:
        raise ApiError(409, "no_calibration_bank", str(e)) from None


def _out(keywords: KeywordService, tenant: str, r: KeywordRecord) -> KeywordOut:
    """A stored keyword with the false alarms per hour its threshold is expected to give."""
    return KeywordOut.of(r).model_copy(update={"expected_fa_per_hour": keywords.expected_fa_per_hour(tenant, r.id, r.threshold)})


@router.delete("/{keyword_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_keyword(keyword_id: KeywordId, state: StateDep, keywords: KeywordsDep, tenant: TenantDep) -> Response:
    """Delete; running streams stop matching it at their next decode."""
    try:
        keywords.delete(tenant, keyword_id)
    except KeywordNotFound:
        raise _not_found(keyword_id) from None
    state.refresh_keyword_gauge()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

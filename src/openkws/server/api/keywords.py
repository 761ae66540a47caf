"""``/v1/keywords``: enroll (single and batch), list, get, change threshold, delete.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so G2P, the text encoder, TTS
synthesis (``proxy`` ``tts``/``both``) and the database never block the event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from openkws.engine.calibration import CalibrationError
from openkws.keywords.enrollment import Enrolled, EnrollItem, InvalidKeywordText, TooManyKeywords
from openkws.keywords.registry import KeywordRegistry
from openkws.keywords.sensitivity import NoCalibrationBank
from openkws.keywords.store import KeywordNotFound, KeywordRecord
from openkws.server.api.deps import MetricsDep, RegistryDep, SettingsDep, TenantDep, enroll_rate_limit
from openkws.server.api.errors import ApiError
from openkws.server.api.schemas import (
    ErrorResponse,
    KeywordBatchCreate,
    KeywordBatchOut,
    KeywordCreate,
    KeywordCreated,
    KeywordOut,
    KeywordPage,
    KeywordPatch,
)
from openkws.settings import Settings
from openkws.text.tts import TTSError, TTSUnavailable

router = APIRouter(prefix="/v1/keywords", tags=["keywords"])
ERRORS: dict[int | str, dict[str, object]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 413, 422)}
ENROLL_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    **{c: {"model": ErrorResponse} for c in (409, 429, 503)},
}


MAX_ID = 2**63 - 1  # ids are signed 64-bit in every backend; a larger number is a 422, not a 500
KeywordId = Annotated[int, Path(ge=1, le=MAX_ID, description="keyword id")]


def _not_found(keyword_id: int) -> ApiError:
    return ApiError(
        404, "keyword_not_found", f"keyword {keyword_id} not found; GET /v1/keywords lists enrolled keywords"
    )


def _check_metadata(items: Sequence[KeywordCreate], settings: Settings) -> None:
    for i, it in enumerate(items):
        if it.metadata is None:
            continue
        size = len(json.dumps(it.metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > settings.max_metadata_bytes:
            where = f"keywords[{i}].metadata" if len(items) > 1 else "metadata"
            raise ApiError(
                422,
                "metadata_too_large",
                f"{where} is {size} bytes of UTF-8 JSON; at most {settings.max_metadata_bytes} are accepted",
            )


def _phonemes(value: list[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(value.split()) if isinstance(value, str) else tuple(value)


def _created(keywords: KeywordRegistry, item: KeywordCreate, e: Enrolled) -> KeywordCreated:
    """The response for one item: which words were guessed, and a note when a re-enrolled text kept
    a threshold other than the one asked for."""
    out = KeywordCreated.from_enrolled(e)
    if item.phonemes is None:
        out.guessed_words = [w for w in e.record.text.split() if not keywords.spotter.g2p.in_vocabulary(w)]
    if not e.created and item.threshold is not None and abs(item.threshold - e.record.threshold) > 1e-9:
        out.note = (
            f"already enrolled with threshold {e.record.threshold:g}; the requested {item.threshold:g} was not "
            f"applied: PATCH /v1/keywords/{e.record.id} changes it"
        )
    return out


def _enroll(
    keywords: KeywordRegistry, tenant: str, items: Sequence[KeywordCreate], batch: bool
) -> list[Enrolled]:
    try:
        return keywords.enroll(
            tenant,
            [
                EnrollItem(
                    i.text,
                    i.threshold,
                    i.metadata,
                    i.proxy,
                    phonemes=_phonemes(i.phonemes),
                    target_fa_per_hour=i.target_fa_per_hour,
                )
                for i in items
            ],
        )
    except TTSUnavailable as e:
        raise ApiError(
            503,
            "tts_unavailable",
            f"proxy 'tts' and 'both' need espeak-ng and flite, which this "
            f"server cannot run ({e}); enroll with proxy 'text', or install them (OPENKWS_ESPEAK_BINARY "
            "and OPENKWS_FLITE_BINARY name the executables)",
        ) from None
    except TTSError as e:
        raise ApiError(
            503,
            "tts_failed",
            f"speech synthesis for the acoustic proxy failed ({e}); retry, or enroll with proxy 'text'",
        ) from None
    except TooManyKeywords as e:
        raise ApiError(409, "too_many_keywords", e.message) from None
    except NoCalibrationBank as e:
        raise ApiError(409, "no_calibration_bank", str(e)) from None
    except CalibrationError as e:  # the schema bounds the target; this guards direct registry misuse
        raise ApiError(422, "invalid_request", f"target_fa_per_hour: {e}") from None
    except InvalidKeywordText as e:
        field = "phonemes" if e.error.code == "invalid_phonemes" else "text"
        where = f"keywords[{e.position}].{field}" if batch else field
        raise ApiError(
            422, "invalid_keyword_text", f"{where}: {e.error.message}", rule=e.error.code, position=e.position
        ) from None


@router.post(
    "",
    response_model=KeywordCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": KeywordCreated, "description": "already enrolled (idempotent)"},
        **ENROLL_ERRORS,
    },
    dependencies=[Depends(enroll_rate_limit)],
)
def create_keyword(
    body: KeywordCreate,
    response: Response,
    keywords: RegistryDep,
    tenant: TenantDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> KeywordCreated:
    """Enroll one keyword; the same text again returns the existing keyword (200) unchanged, with a
    ``note`` when the request asked for another threshold. ``rewrites`` lists what normalisation
    changed in the text."""
    t0 = time.perf_counter()
    _check_metadata([body], settings)
    (enrolled,) = _enroll(keywords, tenant, [body], batch=False)
    if not enrolled.created:
        response.status_code = status.HTTP_200_OK
    metrics.enroll_latency.observe(time.perf_counter() - t0)
    return _created(keywords, body, enrolled)


@router.post(
    "/batch",
    response_model=KeywordBatchOut,
    responses=ENROLL_ERRORS,
    dependencies=[Depends(enroll_rate_limit)],
)
def create_keywords(
    body: KeywordBatchCreate,
    keywords: RegistryDep,
    tenant: TenantDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> KeywordBatchOut:
    """Enroll several keywords at once: all texts are validated first (all-or-nothing)."""
    if len(body.keywords) > settings.max_batch_keywords:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(body.keywords)} keywords in one request; at most {settings.max_batch_keywords} are accepted",
        )
    t0 = time.perf_counter()
    _check_metadata(body.keywords, settings)
    enrolled = _enroll(keywords, tenant, body.keywords, batch=True)
    metrics.enroll_latency.observe(time.perf_counter() - t0)
    return KeywordBatchOut(
        keywords=[_created(keywords, i, e) for i, e in zip(body.keywords, enrolled, strict=True)]
    )


@router.get("", response_model=KeywordPage, responses=ERRORS)
def list_keywords(
    keywords: RegistryDep,
    tenant: TenantDep,
    limit: int = Query(100, ge=1, le=1000, description="page size"),
    after: int | None = Query(None, ge=0, le=MAX_ID, description="return keywords with id > after"),
) -> KeywordPage:
    items = keywords.page(tenant, after, limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return KeywordPage(
        items=[_out(keywords, tenant, r) for r in items],
        total=keywords.count(tenant),
        next_after=items[-1].id if more and items else None,
    )


@router.get("/{keyword_id}", response_model=KeywordOut, responses=ERRORS)
def get_keyword(keyword_id: KeywordId, keywords: RegistryDep, tenant: TenantDep) -> KeywordOut:
    try:
        return _out(keywords, tenant, keywords.get(tenant, keyword_id))
    except KeywordNotFound:
        raise _not_found(keyword_id) from None


@router.patch("/{keyword_id}", response_model=KeywordOut, responses={**ERRORS, 409: {"model": ErrorResponse}})
def patch_keyword(
    keyword_id: KeywordId, body: KeywordPatch, keywords: RegistryDep, tenant: TenantDep
) -> KeywordOut:
    """Change the threshold (raw, or from `target_fa_per_hour`); running streams use it from their next decode."""
    try:
        if body.threshold is not None:
            return _out(keywords, tenant, keywords.set_threshold(tenant, keyword_id, body.threshold))
        if body.target_fa_per_hour is None:  # the schema requires one of the two; kept under python -O
            raise ApiError(422, "invalid_request", "give exactly one of threshold and target_fa_per_hour")
        return _out(keywords, tenant, keywords.set_target(tenant, keyword_id, body.target_fa_per_hour))
    except KeywordNotFound:
        raise _not_found(keyword_id) from None
    except NoCalibrationBank as e:
        raise ApiError(409, "no_calibration_bank", str(e)) from None
    except CalibrationError as e:
        raise ApiError(422, "invalid_request", f"target_fa_per_hour: {e}") from None


def _out(keywords: KeywordRegistry, tenant: str, r: KeywordRecord) -> KeywordOut:
    """A stored keyword with the false alarms per hour its threshold is expected to give."""
    expected = keywords.expected_fa_per_hour(tenant, r.id, r.threshold)
    # The advice for the threshold it has now (issue 23: `keywords import` showed the old one's rate).
    warnings = keywords.sensitivity.warnings(r.phonemes, expected)
    return KeywordOut.of(r).model_copy(update={"expected_fa_per_hour": expected, "warnings": warnings})


@router.delete("/{keyword_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_keyword(keyword_id: KeywordId, keywords: RegistryDep, tenant: TenantDep) -> Response:
    """Delete; running streams stop matching it at their next decode."""
    try:
        keywords.delete(tenant, keyword_id)
    except KeywordNotFound:
        raise _not_found(keyword_id) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)

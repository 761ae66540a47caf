"""``POST /v1/detect``: all detections in an uploaded WAV/FLAC/OGG (Vorbis or Opus) file, and
``GET /v1/detections/counts``: the tenant's most detected keywords.

The file is decoded, then fed in chunks through the same :class:`AudioSession`, micro-batcher and
engine step as a websocket stream, so a file and the same audio streamed with ``vad: off`` give the
same events (an upload is not gated: the gate would drop the file's silences and trailing audio).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
from fastapi import APIRouter, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from openkws.audio import ACCEPTED_FILES, AudioError, decode_file
from openkws.engine.events import DecodeResult
from openkws.engine.score_trace import ScoreTrace, TraceRecorder
from openkws.protocol import DetectionEvent, NearMissEvent, to_wire
from openkws.server.admission import check_engine
from openkws.server.api.deps import StateDep, StreamTenantDep
from openkws.server.api.errors import ApiError
from openkws.server.api.schemas import (
    DetectionCountsOut,
    DetectResponse,
    ErrorResponse,
    KeywordCount,
    KeywordTraceOut,
    TraceOut,
)
from openkws.server.batcher import BatcherClosed, QueueFull
from openkws.server.detection_counts import ranked
from openkws.server.sessions import AudioSession, merge
from openkws.server.state import AppState

router = APIRouter(tags=["detect"])

AUDIO_ERROR_STATUS = {
    "empty_audio": 400,
    "truncated_audio": 400,
    "corrupt_audio": 400,
    "no_audio": 400,
    "invalid_samples": 400,
    "audio_too_long": 413,
    "undecodable_audio": 415,
    "unknown_length": 415,
    "unsupported_format": 415,
    "unsupported_sample_rate": 422,
    "unsupported_channels": 422,
}
READ_CHUNK = 1 << 20


async def _read_limited(file: UploadFile, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await file.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413, "upload_too_large", f"the upload exceeds {limit} bytes; send at most {limit} bytes"
            )
        parts.append(chunk)
    return b"".join(parts)


def check_subset(state: AppState, tenant: str, keywords: list[int] | None) -> None:
    if keywords is None:
        return
    if not keywords:
        raise ApiError(422, "invalid_request", "keywords is empty; omit it to match every enrolled keyword")
    missing = state.registry.missing(tenant, keywords)
    if missing:
        raise ApiError(
            404,
            "keyword_not_found",
            f"keyword ids {missing} are not enrolled; GET /v1/keywords lists enrolled ids",
        )


def retry_after(state: AppState) -> dict[str, str]:
    return {"Retry-After": str(state.settings.retry_after_s)}


def admit_upload(state: AppState) -> None:
    """503 with Retry-After while the engine is past its latency budget (the open streams come first)."""
    verdict = check_engine(state, "detect", extra_streams=0)
    if verdict.reason is not None:
        raise ApiError(
            503,
            "overloaded",
            f"{verdict.message}; the upload was not processed so that open streams keep their latency; "
            f"retry in {state.settings.retry_after_s} s",
            headers=retry_after(state),
        )


async def run_session(state: AppState, session: AudioSession, result: DecodeResult) -> DecodeResult:
    """Submit the session until it has no queued work."""
    try:
        while session.has_work():
            merge(result, await state.batcher.submit(session))
    except QueueFull as e:
        raise ApiError(503, "overloaded", str(e), headers=retry_after(state)) from None
    except BatcherClosed as e:
        raise ApiError(503, "shutting_down", str(e)) from None
    return result


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses={c: {"model": ErrorResponse} for c in (400, 401, 403, 404, 413, 415, 422, 503)},
)
async def detect(
    state: StateDep,
    tenant: StreamTenantDep,
    file: UploadFile = File(description=f"{ACCEPTED_FILES}; 8–48 kHz; up to 8 channels"),
    keywords: list[int] | None = Query(None, description="only these keyword ids"),
    debug: bool = Query(False, description="also return near misses"),
    trace: bool = Query(False, description="also return every keyword's scores over time (implies debug)"),
    competition: Literal["best", "all"] = Query(
        "best", description="best: only the best of keywords firing on the same audio; all: each"
    ),
) -> DetectResponse:
    settings = state.settings
    check_subset(state, tenant, keywords)
    admit_upload(state)
    data = await _read_limited(file, settings.max_upload_bytes)
    try:
        decoded = await run_in_threadpool(decode_file, data, settings.max_upload_seconds, file.filename)
    except AudioError as e:
        raise ApiError(AUDIO_ERROR_STATUS.get(e.code, 400), e.code, e.message) from None
    samples = decoded.samples
    recorder = TraceRecorder(state.spotter.index, tenant, keywords) if trace else None
    stream = state.spotter.create_stream(
        keywords, tenant, debug=debug or trace, competition=competition, score_hook=recorder
    )
    if recorder is not None:
        recorder.attach(stream)
    session = AudioSession(stream, decoded.sample_rate, samples.shape[1], source="detect")
    result = DecodeResult()
    chunk = max(1, int(settings.offline_chunk_seconds * decoded.sample_rate))
    for i in range(0, len(samples), chunk):
        session.push_samples(samples[i : i + chunk])
        await run_session(state, session, result)
    session.finish()
    await run_session(state, session, result)
    state.record_detections(tenant, result.detections, "detect")
    return DetectResponse(
        detections=[to_wire(DetectionEvent, d) for d in result.detections],
        near_misses=[to_wire(NearMissEvent, n) for n in result.near_misses],
        duration_ms=1000.0 * decoded.seconds,
        sample_rate=decoded.sample_rate,
        channels=int(samples.shape[1]),
        format=decoded.format,
        model_version=state.spotter.spec.model_version,
        trace=None if recorder is None else trace_out(recorder.trace()),
    )


def trace_out(t: ScoreTrace) -> TraceOut:
    """A score trace as JSON: 4 decimals, NaN (keyword not enrolled yet) as null."""
    return TraceOut(
        times_ms=[round(float(x), 1) for x in t.times_ms],
        keywords=[
            KeywordTraceOut(
                id=k.keyword_id,
                text=k.text,
                threshold=k.threshold,
                scores=[round(float(v), 4) if np.isfinite(v) else None for v in k.scores],
            )
            for k in t.keywords
        ],
    )


@router.get(
    "/v1/detections/counts",
    response_model=DetectionCountsOut,
    responses={c: {"model": ErrorResponse} for c in (401, 403, 422)},
)
def detection_counts(
    state: StateDep,
    tenant: StreamTenantDep,
    limit: int = Query(20, ge=1, le=1000, description="how many keywords"),
) -> DetectionCountsOut:
    """Detections per keyword (streams and uploads) since this replica started, most first, over
    every worker whichever one answers; deleted keywords are dropped. Per-keyword figures are here
    rather than in Prometheus labels. A plain ``def``: with ``--workers`` it reads files."""
    since, counts = state.detection_totals(tenant)
    texts = state.registry.texts(tenant, list(counts))
    return DetectionCountsOut(
        since=dt.datetime.fromtimestamp(since, dt.timezone.utc),
        keywords=[KeywordCount(id=i, text=texts[i], detections=n) for i, n in ranked(counts, texts, limit)],
    )

"""REST request and response models (the OpenAPI schema at ``/openapi.json`` comes from these)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..engine.acoustic_proxy import ProxyMode
from ..engine.spotter import DecodeResult
from ..keywords import Confusable, Enrolled
from ..store import KeywordRecord


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class KeywordCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=1024, description="1-6 English words, e.g. 'hey jarvis'")
    threshold: Annotated[float | None, Field(ge=0.0, le=1.0, description="cosine threshold; default: the service's")] = None
    metadata: Annotated[dict[str, Any] | None, Field(description="free-form JSON object stored with the keyword")] = None
    proxy: Annotated[ProxyMode, Field(description=(
        "how the keyword's proxy is made: 'text' (text encoder; default, fastest), 'tts' (mean acoustic "
        "embedding of 8 espeak-ng/flite renditions; better on confusable keywords, ~0.5 s more per keyword) or "
        "'both' (normalised sum of the two)"))] = "text"
    target_fa_per_hour: Annotated[float | None, Field(gt=0.0, le=3600.0, description=(
        "sensitivity: the threshold is set so that the keyword is expected to fire this many times per hour on "
        "background speech (default 0.5, from the model's calibration bank); a raw `threshold` overrides it"))] = None


class KeywordBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[KeywordCreate] = Field(min_length=1)


class KeywordPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="raw cosine threshold")
    target_fa_per_hour: float | None = Field(None, gt=0.0, le=3600.0,
                                             description="or: the threshold for this many expected false alarms per hour")

    @model_validator(mode="after")
    def _one(self) -> KeywordPatch:
        if (self.threshold is None) == (self.target_fa_per_hour is None):
            raise ValueError("give exactly one of threshold and target_fa_per_hour")
        return self


class ConfusableOut(BaseModel):
    id: int
    text: str
    cosine: float
    phoneme_distance: float
    reason: str = Field(description="similar | contains | contained_in | one_word")

    @classmethod
    def of(cls, c: Confusable) -> ConfusableOut:
        return cls(id=c.id, text=c.text, cosine=c.cosine, phoneme_distance=c.phoneme_distance, reason=c.reason)


class KeywordOut(BaseModel):
    id: int
    text: str = Field(description="normalized text")
    phonemes: list[str] = Field(description="ARPAbet without stress; '|' between words")
    threshold: float
    metadata: dict[str, Any] | None
    proxy: ProxyMode = Field(description="how the proxy was made: text | tts | both")
    expected_fa_per_hour: float | None = Field(default=None, description=(
        "false alarms per hour expected at this threshold on background speech (model calibration bank; null "
        "without one)"))
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, r: KeywordRecord) -> KeywordOut:
        return cls(id=r.id, text=r.text, phonemes=list(r.phonemes), threshold=r.threshold, metadata=r.metadata,
                   proxy=r.proxy_mode, created_at=r.created_at, updated_at=r.updated_at)


class KeywordCreated(KeywordOut):
    created: bool = Field(description="false when the same text was already enrolled (idempotent)")
    confusable_with: list[ConfusableOut]
    warnings: list[str] = Field(default_factory=list, description="too short, fires often, one word from another")

    @classmethod
    def from_enrolled(cls, e: Enrolled) -> KeywordCreated:
        base = KeywordOut.of(e.record).model_dump() | {"expected_fa_per_hour": e.expected_fa_per_hour}
        return cls(**base, created=e.created, confusable_with=[ConfusableOut.of(c) for c in e.confusable_with],
                   warnings=list(e.warnings))


class KeywordBatchOut(BaseModel):
    keywords: list[KeywordCreated]


class KeywordPage(BaseModel):
    items: list[KeywordOut]
    total: int
    next_after: int | None = Field(description="pass as ?after= for the next page; null at the end")


class DetectionOut(BaseModel):
    keyword_id: int
    text: str
    score: float
    threshold: float
    start_ms: float
    end_ms: float
    decided_ms: float


class NearMissCandidateOut(BaseModel):
    keyword_id: int
    text: str
    score: float
    threshold: float


class NearMissOut(BaseModel):
    time_ms: float
    candidates: list[NearMissCandidateOut]


class DetectResponse(BaseModel):
    detections: list[DetectionOut]
    near_misses: list[NearMissOut]
    duration_ms: float
    sample_rate: int
    channels: int
    format: str
    model_version: str

    @staticmethod
    def lists(result: DecodeResult) -> tuple[list[DetectionOut], list[NearMissOut]]:
        dets = [DetectionOut(keyword_id=d.keyword_id, text=d.text, score=d.score, threshold=d.threshold,
                             start_ms=d.start_ms, end_ms=d.end_ms, decided_ms=d.decided_ms) for d in result.detections]
        nms = [NearMissOut(time_ms=n.time_ms, candidates=[
            NearMissCandidateOut(keyword_id=c.keyword_id, text=c.text, score=c.score, threshold=c.threshold)
            for c in n.candidates]) for n in result.near_misses]
        return dets, nms


class Backends(BaseModel):
    onnx: str
    index: str
    database: str


class DeviceReport(BaseModel):
    requested: str = Field(description="OPENKWS_DEVICE: auto | cpu | cuda")
    onnx_providers: list[str] = Field(description="execution providers the ONNX sessions use (session.get_providers())")
    fallback: bool = Field(description="CUDA was offered and asked for, but the sessions run without it")
    warning: str | None = Field(description="what fell back and what to check; null without a fallback")


class ReadyResponse(BaseModel):
    status: str
    model_version: str
    frontend: str
    backend: Backends
    device: DeviceReport
    keywords: int
    active_streams: int
    max_streams: int
    queue_depth: int

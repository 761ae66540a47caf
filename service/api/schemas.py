"""REST request and response models (the OpenAPI schema at ``/openapi.json`` comes from these)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

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
    phonemes: Annotated[list[str] | str | None, Field(max_length=256, description=(
        "pronunciation override: ARPAbet without stress, '|' between words, e.g. 'EH K S | K EY | S IY | D IY' "
        "(a list, or a string split on spaces); validated against the model's phoneme inventory"))] = None


class KeywordBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[KeywordCreate] = Field(min_length=1)


class KeywordPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(ge=0.0, le=1.0)


class ConfusableOut(BaseModel):
    id: int
    text: str
    cosine: float
    phoneme_distance: float
    reason: str = Field(description="similar | contains | contained_in")

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
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, r: KeywordRecord) -> KeywordOut:
        return cls(id=r.id, text=r.text, phonemes=list(r.phonemes), threshold=r.threshold, metadata=r.metadata,
                   proxy=r.proxy_mode, created_at=r.created_at, updated_at=r.updated_at)


class KeywordCreated(KeywordOut):
    created: bool = Field(description="false when the same text was already enrolled (idempotent)")
    confusable_with: list[ConfusableOut]
    guessed_words: list[str] = Field(default_factory=list, description=(
        "words not in the pronouncing dictionary whose phonemes the neural G2P guessed: check `phonemes`, or "
        "enroll again with a `phonemes` override"))
    note: str | None = Field(None, description="set when the request asked for something it did not get, e.g. a "
                                               "new threshold for a text already enrolled (PATCH changes it)")

    @classmethod
    def from_enrolled(cls, e: Enrolled) -> KeywordCreated:
        base = KeywordOut.of(e.record).model_dump()
        return cls(**base, created=e.created, confusable_with=[ConfusableOut.of(c) for c in e.confusable_with])


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

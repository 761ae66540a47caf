"""REST request and response models (the OpenAPI schema at ``/openapi.json`` comes from these).

Request models are strict: ``"0.5"`` or ``true`` for a threshold is a 422, never coerced.
Detection and near-miss events are the websocket's wire models (:mod:`openkws.protocol`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.keywords.confusables import Confusable
from openkws.keywords.registry import Enrolled
from openkws.keywords.store import KeywordRecord
from openkws.protocol import DetectionEvent, NearMissEvent


def _no_negative_zero(x: float) -> float:
    return x + 0.0  # -0.0 + 0.0 == 0.0: a threshold of -0.0 is stored and echoed as 0.0


def _finite_json(value: Any, where: str = "metadata") -> Any:
    """JSON has no NaN or infinity (Python's parser accepts them, PostgreSQL's JSON does not)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where} holds {value!r}, which is not a JSON number; use finite numbers or strings"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{where}[{i}]")
    return value


Threshold = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_no_negative_zero)]
Metadata = Annotated[dict[str, Any], AfterValidator(_finite_json)]
# Strict: a JSON number only (not "0.5" or true); range checked by the field.
FaPerHour = Annotated[float, Field(gt=0.0, le=3600.0)]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class KeywordCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(max_length=1024, description="1-6 English words, e.g. 'hey jarvis'")
    threshold: Annotated[Threshold | None, Field(description="cosine threshold; default: the service's")] = (
        None
    )
    metadata: Annotated[
        Metadata | None,
        Field(description="free-form JSON object stored with the keyword (finite numbers only)"),
    ] = None
    proxy: Annotated[
        ProxyMode,
        Field(
            description=(
                "how the keyword's proxy is made: 'text' (text encoder; default, fastest), 'tts' (mean acoustic "
                "embedding of 8 espeak-ng/flite renditions; better on confusable keywords, ~0.5 s more per keyword) or "
                "'both' (normalised sum of the two)"
            )
        ),
    ] = "text"
    phonemes: Annotated[
        list[str] | str | None,
        Field(
            max_length=256,
            description=(
                "pronunciation override: ARPAbet without stress, '|' between words, e.g. 'EH K S | K EY | S IY | D IY' "
                "(a list, or a string split on spaces); validated against the model's phoneme inventory"
            ),
        ),
    ] = None
    target_fa_per_hour: Annotated[
        FaPerHour | None,
        Field(
            gt=0.0,
            le=3600.0,
            description=(
                "sensitivity: the threshold is set so that the keyword is expected to fire this many times per hour on "
                "background speech (default 0.5, from the model's calibration bank); a raw `threshold` overrides it"
            ),
        ),
    ] = None


class KeywordBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    keywords: list[KeywordCreate] = Field(min_length=1)


class KeywordPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    threshold: Threshold | None = Field(None, description="raw cosine threshold")
    target_fa_per_hour: FaPerHour | None = Field(
        None, description="or: the threshold for this many expected false alarms per hour"
    )

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
        return cls(
            id=c.id, text=c.text, cosine=c.cosine, phoneme_distance=c.phoneme_distance, reason=c.reason
        )


class KeywordOut(BaseModel):
    id: int
    text: str = Field(description="normalized text")
    phonemes: list[str] = Field(description="ARPAbet without stress; '|' between words")
    threshold: float
    metadata: dict[str, Any] | None
    proxy: ProxyMode = Field(description="how the proxy was made: text | tts | both")
    expected_fa_per_hour: float | None = Field(
        default=None,
        description=(
            "false alarms per hour expected at this threshold on background speech (model calibration bank; null "
            "without one)"
        ),
    )
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, r: KeywordRecord) -> KeywordOut:
        return cls(
            id=r.id,
            text=r.text,
            phonemes=list(r.phonemes),
            threshold=r.threshold,
            metadata=r.metadata,
            proxy=r.proxy_mode,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class KeywordCreated(KeywordOut):
    created: bool = Field(description="false when the same text was already enrolled (idempotent)")
    confusable_with: list[ConfusableOut]
    rewrites: list[str] = Field(
        description="what normalisation changed in the submitted text beyond case and "
        "punctuation (invisible characters, NFKC, accents, numbers); empty: none"
    )
    guessed_words: list[str] = Field(
        default_factory=list,
        description=(
            "words not in the pronouncing dictionary whose phonemes the neural G2P guessed: check `phonemes`, or "
            "enroll again with a `phonemes` override"
        ),
    )
    note: str | None = Field(
        None,
        description="set when the request asked for something it did not get, e.g. a "
        "new threshold for a text already enrolled (PATCH changes it)",
    )

    expected_hit_rate: float | None = Field(
        default=None,
        description=(
            "share of TTS renditions of the keyword (the proxy voices, 10% slower and faster, and under pink noise "
            "at 10 dB SNR) whose best score reaches the threshold: a TTS estimate, not a measurement on real "
            "voices; null when not estimated (already enrolled, TTS missing, or OPENKWS_ENROLL_HIT_RATE=false)"
        ),
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="too short, fires often, rarely reached (low expected_hit_rate), one word from another",
    )

    @classmethod
    def from_enrolled(cls, e: Enrolled) -> KeywordCreated:
        base = KeywordOut.of(e.record).model_dump() | {"expected_fa_per_hour": e.expected_fa_per_hour}
        return cls(
            **base,
            created=e.created,
            confusable_with=[ConfusableOut.of(c) for c in e.confusable_with],
            rewrites=list(e.rewrites),
            expected_hit_rate=e.expected_hit_rate,
            warnings=list(e.warnings),
        )


class KeywordBatchOut(BaseModel):
    keywords: list[KeywordCreated]


class KeywordPage(BaseModel):
    items: list[KeywordOut]
    total: int
    next_after: int | None = Field(description="pass as ?after= for the next page; null at the end")


class DetectResponse(BaseModel):
    detections: list[DetectionEvent]
    near_misses: list[NearMissEvent]
    duration_ms: float
    sample_rate: int
    channels: int
    format: str
    model_version: str


class KeywordCount(BaseModel):
    id: int
    text: str
    detections: int


class DetectionCountsOut(BaseModel):
    since: dt.datetime = Field(description="counting started (this replica's start)")
    keywords: list[KeywordCount] = Field(description="the tenant's most detected keywords, most first")


class Backends(BaseModel):
    onnx: str
    index: str
    database: str


class DeviceReport(BaseModel):
    requested: str = Field(description="OPENKWS_DEVICE: auto | cpu | cuda")
    onnx_providers: list[str] = Field(
        description="execution providers the ONNX sessions use (session.get_providers())"
    )
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

"""REST request and response models (the OpenAPI schema at ``/openapi.json`` comes from these).

Request models are strict: ``"0.5"`` or ``true`` for a threshold is a 422, never coerced.
Detection and near-miss events are the websocket's wire models (:mod:`openkws.protocol`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.engine.calibration import MAX_TARGET_FA_PER_HOUR, MIN_TARGET_FA_PER_HOUR
from openkws.keywords.confusables import Confusable
from openkws.keywords.enrollment import Enrolled
from openkws.keywords.fields import MAX_PHONEMES, finite_json, phoneme_tokens
from openkws.keywords.store import KeywordRecord
from openkws.protocol import DetectionEvent, NearMissEvent
from openkws.text.g2p import MAX_CHARS


def _no_negative_zero(x: float) -> float:
    return x + 0.0  # -0.0 + 0.0 == 0.0: a threshold of -0.0 is stored and echoed as 0.0


def _phonemes(value: list[str] | str | None) -> list[str] | str | None:
    if value is not None:
        phoneme_tokens(value)  # at most MAX_PHONEMES symbols, as a list or as one string
    return value


Threshold = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_no_negative_zero)]
Metadata = Annotated[dict[str, Any], AfterValidator(finite_json)]
# Strict: a JSON number only (not "0.5" or true); range checked by the field (5e-324 is a 422, not a 500).
FaPerHour = Annotated[float, Field(ge=MIN_TARGET_FA_PER_HOUR, le=MAX_TARGET_FA_PER_HOUR)]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class KeywordCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # No max_length here: the G2P checks the length, so every path (REST, library, CLI, key files)
    # gives the same short `too_long` error with one limit (the request body limit bounds the size).
    text: str = Field(description=f"1-6 English words, at most {MAX_CHARS} characters, e.g. 'hey jarvis'")
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
            description=(
                "pronunciation override: ARPAbet without stress, '|' between words, e.g. 'EH K S | K EY | S IY | D IY' "
                f"(a list, or a string split on spaces; at most {MAX_PHONEMES} symbols either way); validated "
                "against the model's phoneme inventory"
            ),
        ),
        AfterValidator(_phonemes),
    ] = None
    target_fa_per_hour: Annotated[
        FaPerHour | None,
        Field(
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
    warnings: list[str] = Field(
        default_factory=list,
        description="advice for the current threshold: too short, fires often (GET and PATCH of one keyword; "
        "empty in lists)",
    )

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
        base = KeywordOut.of(e.record).model_dump(exclude={"warnings"}) | {
            "expected_fa_per_hour": e.expected_fa_per_hour
        }
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


class KeywordTraceOut(BaseModel):
    id: int
    text: str
    threshold: float
    scores: list[float | None] = Field(
        description="best cosine of any window ending at each of `times_ms`; null: not enrolled yet"
    )


class TraceOut(BaseModel):
    times_ms: list[float] = Field(
        description="end of each evaluated frame's windows (one per 80 ms; the last ones reach into the "
        "silence that flushes the end of the file)"
    )
    keywords: list[KeywordTraceOut]


class DetectResponse(BaseModel):
    detections: list[DetectionEvent]
    near_misses: list[NearMissEvent]
    duration_ms: float
    sample_rate: int
    channels: int
    format: str
    model_version: str
    trace: TraceOut | None = Field(None, description="per-keyword scores over time (?trace=true)")


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
    status: str = Field(description="ready | degraded (database unavailable: detection works, writes 503)")
    database_error: str | None = Field(None, description="why the database is unavailable (degraded)")
    model_version: str
    frontend: str
    backend: Backends
    device: DeviceReport
    keywords: int
    active_streams: int
    max_streams: int
    queue_depth: int
    backlog_ms: Annotated[
        float | None,
        Field(
            description="engine lag over the last second (admission refuses streams past latency_budget_ms)"
        ),
    ] = None
    engine_utilisation: Annotated[
        float | None,
        Field(description="share of the inference workers' time the open streams take (measured)"),
    ] = None

"""The ``WS /v1/stream`` protocol, version 1: typed JSON control messages and close codes.

Client -> server
    1. text ``start``: ``{"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le",
       "channels": 1, "keywords": null, "debug": false}``
    2. binary audio frames: interleaved little-endian samples in the declared encoding;
    3. text ``stop``: ``{"type": "stop", "version": 1}`` (flushes, then the server sends ``summary``).

Server -> client
    ``ready`` once after a valid ``start``; ``detection`` events as they happen; ``near_miss`` when
    ``debug`` is on; ``error`` before any abnormal close; ``summary`` last after ``stop``.

Close codes (also in docs/SERVICE.md): see :class:`CloseCode`.

Types are strict: ``version`` is a JSON integer (required in ``start``), ``sample_rate`` and
``channels`` integers, ``debug`` a boolean; ``"16000"`` or ``"yes"`` close the stream with 4001.

Example:
    >>> parse_client_message('{"type": "start", "version": 1, "sample_rate": 8000}').channels
    1
    >>> parse_client_message('{"type": "stop"}').type
    'stop'
    >>> try:
    ...     parse_client_message('{"type": "start", "version": 1, "sample_rate": "16000"}')
    ... except ProtocolError as e:
    ...     print(int(e.code), e.message.split(";")[0])
    4001 invalid control message (start.sample_rate: Input should be a valid integer)
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

PROTOCOL_VERSION = 1


class CloseCode(IntEnum):
    """Websocket close codes used by ``/v1/stream``."""

    NORMAL = 1000  # after ``summary``
    GOING_AWAY = 1001  # server shutting down
    POLICY_VIOLATION = 1008  # websocket control frames (ping/pong/close) over the per-connection budget
    MESSAGE_TOO_BIG = 1009  # a frame larger than max_frame_bytes
    INTERNAL_ERROR = 1011  # a server bug; other streams are unaffected
    TRY_AGAIN_LATER = 1013  # too many concurrent streams, or inference queue full
    BINARY_BEFORE_START = 4000  # audio before a valid ``start``
    INVALID_MESSAGE = 4001  # text that is not valid JSON or not a valid message for this state
    UNSUPPORTED_VERSION = 4002  # ``version`` other than PROTOCOL_VERSION
    UNSUPPORTED_AUDIO_FORMAT = 4003  # sample_rate / encoding / channels outside the accepted ranges
    UNKNOWN_KEYWORD = 4004  # ``keywords`` lists ids that are not enrolled
    TRUNCATED_SAMPLE = 4005  # a binary frame that is not a whole number of samples
    INVALID_SAMPLES = 4006  # float32 audio with NaN or infinity
    IDLE_TIMEOUT = 4008  # no message for idle_timeout_s
    SEND_TIMEOUT = 4009  # the client did not read for send_timeout_s (dropped; the client cannot see it)
    STREAM_TOO_LONG = 4010  # more than max_stream_seconds of audio, or open longer than that
    KEEPALIVE_TIMEOUT = 4011  # no pong within ws_ping_timeout_s while the server was reading
    UNAUTHORIZED = 4401  # auth on: no API key, or an invalid or revoked one
    FORBIDDEN = 4403  # the key's scope does not allow streaming


# AudioError codes (openkws.audio) and the close code each ends a stream with
AUDIO_CLOSE: dict[str, CloseCode] = {
    "unsupported_sample_rate": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "unsupported_encoding": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "unsupported_channels": CloseCode.UNSUPPORTED_AUDIO_FORMAT,
    "truncated_sample": CloseCode.TRUNCATED_SAMPLE,
    "invalid_samples": CloseCode.INVALID_SAMPLES,
}


class _Msg(BaseModel):
    # strict: a JSON string or boolean is never coerced to a number (docs promise 4001 for wrong types)
    model_config = ConfigDict(extra="forbid", strict=True)


class StartMessage(_Msg):
    type: Literal["start"]
    version: int
    # Plain types here: the ranges are checked by the handler, so that an unsupported value closes
    # with UNSUPPORTED_AUDIO_FORMAT and a message listing what is accepted.
    sample_rate: int
    encoding: str = "pcm16le"
    channels: int = 1
    keywords: Annotated[list[int] | None, Field(description="only these keyword ids; null = all")] = None
    debug: Annotated[bool, Field(description="also stream near-miss scores")] = False
    competition: Annotated[
        Literal["best", "all"],
        Field(
            description="best: of several keywords firing on the same audio only the best-scoring one is "
            "emitted (the others are near-misses in debug mode); all: each keyword on its own"
        ),
    ] = "best"
    vad: Annotated[
        Literal["on", "off"] | None,
        Field(description="voice-activity gating: score speech segments only; null = the server's default"),
    ] = None


class StopMessage(_Msg):
    type: Literal["stop"]
    version: int = PROTOCOL_VERSION


ClientMessage = Annotated[StartMessage | StopMessage, Field(discriminator="type")]
_client: TypeAdapter[StartMessage | StopMessage] = TypeAdapter(ClientMessage)


class ProtocolError(ValueError):
    def __init__(self, code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_message(text: str) -> StartMessage | StopMessage:
    """Parse one text frame; raises :class:`ProtocolError` with a close code and readable message."""
    try:
        msg = _client.validate_json(text)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in e.errors()[:5]
        )
        raise ProtocolError(
            CloseCode.INVALID_MESSAGE,
            f"invalid control message ({problems}); send JSON like "
            '{"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le", "channels": 1} '
            'or {"type": "stop", "version": 1}',
        ) from None
    if msg.version != PROTOCOL_VERSION:
        raise ProtocolError(
            CloseCode.UNSUPPORTED_VERSION,
            f"protocol version {msg.version} not supported; this server speaks version {PROTOCOL_VERSION}",
        )
    return msg


class _Out(BaseModel):
    version: int = PROTOCOL_VERSION


class Limits(BaseModel):
    max_frame_bytes: int
    max_stream_seconds: float
    idle_timeout_s: float


class ReadyMessage(_Out):
    type: Literal["ready"] = "ready"
    session_id: str
    model_version: str
    sample_rate: int
    encoding: str
    channels: int
    keywords: int = Field(description="keywords this stream matches")
    limits: Limits


class DetectionEvent(BaseModel):
    """One detection on the wire (websocket ``detection`` and ``POST /v1/detect``), built from the
    engine's ``Detection`` by :func:`to_wire`."""

    model_config = ConfigDict(from_attributes=True)
    keyword_id: int
    text: str
    score: float
    threshold: float
    start_ms: float
    end_ms: float
    decided_ms: float = Field(description="stream time of the audio that completed the decision")


class NearMissCandidate(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    keyword_id: int
    text: str
    score: float
    threshold: float


class NearMissEvent(BaseModel):
    """Keywords that scored just below their threshold (``debug``), built from the engine's ``NearMiss``."""

    model_config = ConfigDict(from_attributes=True)
    time_ms: float
    candidates: list[NearMissCandidate]


class DetectionMessage(_Out, DetectionEvent):
    type: Literal["detection"] = "detection"


class NearMissMessage(_Out, NearMissEvent):
    type: Literal["near_miss"] = "near_miss"


WireModel = TypeVar("WireModel", bound=BaseModel)


def to_wire(model: type[WireModel], event: object) -> WireModel:
    """The one mapping from an engine event (``Detection``, ``NearMiss``) to its wire model: fields
    are read by name, so a wire field the engine lacks fails here, not silently."""
    return model.model_validate(event, from_attributes=True)


class ErrorMessage(_Out):
    type: Literal["error"] = "error"
    code: str
    message: str
    close_code: int
    retry_after_s: Annotated[
        int | None,
        Field(description="overload refusals (1013): seconds to wait before reconnecting; omitted otherwise"),
    ] = None

    @model_serializer(mode="wrap")
    def _omit_unset_retry(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("retry_after_s") is None:
            out.pop("retry_after_s", None)
        return out


class SummaryMessage(_Out):
    type: Literal["summary"] = "summary"
    session_id: str
    audio_ms: float = Field(description="audio received, in stream time")
    detections: int
    near_misses: int
    frames: int = Field(description="binary frames received")
    reason: Literal["stop", "shutting_down"] = Field(
        "stop",
        description="stop: the client sent stop; shutting_down: the server is stopping (close 1001 follows)",
    )

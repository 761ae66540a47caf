"""What a websocket stream accepts from its client, checked before it touches the engine: the
``start`` message, the keyword subset, later text messages and binary audio frames.

Every refusal is a :class:`openkws.server.admission.Close` that names what was wrong and what is
accepted; :class:`openkws.server.stream_handler.StreamHandler` sends it as the final ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openkws.audio import AudioError, AudioFormat
from openkws.protocol import (
    AUDIO_CLOSE,
    CloseCode,
    ProtocolError,
    StartMessage,
    StopMessage,
    parse_client_message,
)
from openkws.server.admission import Close

START_EXAMPLE = '{"type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm16le", "channels": 1}'


def parse_text(text: str, max_frame_bytes: int) -> StartMessage | StopMessage:
    """A text message, size-checked and parsed (protocol errors keep their close code)."""
    if len(text.encode()) > max_frame_bytes:
        raise Close(
            CloseCode.MESSAGE_TOO_BIG,
            "frame_too_large",
            f"text message of {len(text.encode())} bytes; at most {max_frame_bytes} are accepted",
        )
    try:
        return parse_client_message(text)
    except ProtocolError as e:
        code = "unsupported_version" if e.code == CloseCode.UNSUPPORTED_VERSION else "invalid_message"
        raise Close(e.code, code, e.message) from None


def parse_start(msg: dict[str, object], max_frame_bytes: int) -> tuple[StartMessage, AudioFormat]:
    """The first message: a ``start`` with a valid audio format (not audio, not ``stop``)."""
    if msg.get("bytes") is not None:
        raise Close(
            CloseCode.BINARY_BEFORE_START,
            "binary_before_start",
            f"binary audio frame before start; send a JSON start message first, e.g. {START_EXAMPLE}",
        )
    parsed = parse_text(str(msg.get("text") or ""), max_frame_bytes)
    if isinstance(parsed, StopMessage):
        raise Close(
            CloseCode.INVALID_MESSAGE,
            "invalid_message",
            f"stop before start; send start first, e.g. {START_EXAMPLE}",
        )
    fmt = AudioFormat(parsed.sample_rate, parsed.encoding, parsed.channels)
    try:
        fmt.validate()
    except AudioError as e:
        raise Close(AUDIO_CLOSE[e.code], e.code, e.message) from None
    return parsed, fmt


def keyword_subset(start: StartMessage, missing: Callable[[Sequence[int]], list[int]]) -> list[int] | None:
    """The keyword ids a stream matches (None: every enrolled one); ``missing`` names unknown ids."""
    if start.keywords is None:
        return None
    if not start.keywords:
        raise Close(
            CloseCode.INVALID_MESSAGE,
            "invalid_message",
            "keywords is an empty list; omit it (or send null) to match every enrolled keyword",
        )
    unknown = missing(start.keywords)
    if unknown:
        raise Close(
            CloseCode.UNKNOWN_KEYWORD,
            "unknown_keyword",
            f"keyword ids {unknown[:20]} are not enrolled; GET /v1/keywords lists enrolled ids",
        )
    return start.keywords


def parse_stop(text: str, max_frame_bytes: int) -> StopMessage:
    """A text message after ``start``: only ``stop`` is accepted."""
    parsed = parse_text(text, max_frame_bytes)
    if isinstance(parsed, StartMessage):
        raise Close(
            CloseCode.INVALID_MESSAGE,
            "invalid_message",
            'start was already received; send binary audio frames or {"type": "stop", "version": 1}',
        )
    return parsed


def check_frame(data: bytes, fmt: AudioFormat, max_frame_bytes: int) -> None:
    """A binary audio frame: within the size limit and a whole number of samples."""
    if len(data) > max_frame_bytes:
        raise Close(
            CloseCode.MESSAGE_TOO_BIG,
            "frame_too_large",
            f"binary frame of {len(data)} bytes; at most {max_frame_bytes} are accepted "
            "(send audio in chunks of 20–1000 ms)",
        )
    if len(data) % fmt.bytes_per_frame:
        raise Close(
            CloseCode.TRUNCATED_SAMPLE,
            "truncated_sample",
            f"binary frame of {len(data)} bytes is not a whole number of samples: {fmt.encoding} "
            f"with {fmt.channels} channel(s) needs a multiple of {fmt.bytes_per_frame} bytes",
        )

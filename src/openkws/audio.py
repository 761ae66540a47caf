"""Audio at the service edge: declared formats, PCM frame decoding and file decoding.

Websocket frames and uploaded files both become float32 [n, channels] in [-1, 1] (one PCM scale,
:data:`openkws.constants.PCM_SCALE`) and go to the engine stream, which downmixes and resamples
(:mod:`openkws.engine.stream_input`), so the engine sees the same samples whichever way the audio came. Every error carries a ``code`` and a message saying what
was wrong and what is accepted.

Example:
    >>> fmt = AudioFormat(8000, "pcm16le", 2)
    >>> fmt.validate()
    >>> x = pcm_to_float(np.array([0, 16384, 0, -16384], "<i2").tobytes(), fmt)
    >>> x.shape, x[:, 1].tolist()
    ((2, 2), [0.5, -0.5])
    >>> try:
    ...     AudioFormat(7000, "pcm16le", 1).validate()
    ... except AudioError as e:
    ...     print(e.code, "|", e)
    unsupported_sample_rate | sample_rate 7000 not supported; use 8000–48000 Hz
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from openkws.constants import PCM_SCALE

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
MAX_CHANNELS = 8
ENCODINGS: dict[str, np.dtype[np.generic]] = {"pcm16le": np.dtype("<i2"), "float32le": np.dtype("<f4")}
FILE_FORMATS = ("WAV", "WAVEX", "FLAC", "OGG")
# OGG means Vorbis or Opus: libsndfile decodes both, both are tested, and both are documented.
ACCEPTED_FILES = "WAV, FLAC or OGG (Vorbis or Opus)"
UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's frame count when a header does not declare the length


class AudioError(ValueError):
    """Bad audio input; ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            "unsupported_sample_rate",
            f"sample_rate {rate} not supported; use {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz",
        )


def check_channels(channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError("unsupported_channels", f"channels {channels} not supported; use 1–{MAX_CHANNELS}")


@dataclass(frozen=True)
class AudioFormat:
    """What a websocket client declares in ``start``; validated, never assumed."""

    sample_rate: int
    encoding: str
    channels: int

    def validate(self) -> None:
        check_rate(self.sample_rate)
        if self.encoding not in ENCODINGS:
            raise AudioError(
                "unsupported_encoding",
                f"encoding {self.encoding!r} not supported; use one of {', '.join(ENCODINGS)}",
            )
        check_channels(self.channels)

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample on every channel."""
        return ENCODINGS[self.encoding].itemsize * self.channels


def pcm_to_float(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Interleaved little-endian PCM -> float32 [n, channels] in [-1, 1]."""
    if len(data) % fmt.bytes_per_frame:
        raise AudioError(
            "truncated_sample",
            f"frame of {len(data)} bytes is not a whole number of samples: {fmt.encoding} with "
            f"{fmt.channels} channel(s) needs a multiple of {fmt.bytes_per_frame} bytes",
        )
    x = np.frombuffer(data, ENCODINGS[fmt.encoding]).reshape(-1, fmt.channels)
    if fmt.encoding == "pcm16le":
        return x.astype(np.float32) / np.float32(PCM_SCALE)
    if not np.isfinite(x).all():
        raise AudioError(
            "invalid_samples", "float32le audio contains NaN or infinity; send finite samples in [-1, 1]"
        )
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _wav_truncated(data: bytes) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF/WAVE ``data`` chunk when the file is cut short."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if cid == b"data":
            present = len(data) - pos - 8
            if size not in (0, 0xFFFFFFFF) and present < size:  # 0/-1: streaming writers
                return size, present
            return None
        pos += 8 + size + (size & 1)
    return None


def _ogg_truncated(data: bytes) -> bool:
    """True when an Ogg file does not end with a whole page carrying the end-of-stream flag.

    libsndfile decodes the pages that are present and says nothing, so half a file would answer
    with half the audio."""
    pos, flags = 0, -1
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or pos + 27 > len(data):
            return True
        segments = data[pos + 26]
        if pos + 27 + segments > len(data):
            return True
        end = pos + 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
        if end > len(data):
            return True
        flags, pos = data[pos + 5], end
    return flags < 0 or not flags & 0x04


def _named(name: str | None) -> str:
    """The client's file name for a message: quoted with repr (control characters escaped), cut to
    80 characters; never used as a path."""
    return repr(name[:80]) if name else "the upload"


@dataclass(frozen=True)
class DecodedFile:
    samples: np.ndarray  # float32 [n, channels]
    sample_rate: int
    format: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_file(data: bytes, max_seconds: float, name: str | None = None) -> DecodedFile:
    """Decode an uploaded WAV/FLAC/OGG file (``name``: its file name, for messages); raises
    :class:`AudioError` for every bad case."""
    what = _named(name)
    if not data:
        raise AudioError("empty_audio", f"{what} is empty; send a {ACCEPTED_FILES} file")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        reason = (
            e.error_string if isinstance(e, sf.LibsndfileError) else str(e)
        )  # str(e) holds the BytesIO repr
        raise AudioError(
            "undecodable_audio", f"could not read {what} as audio ({reason}); accepted: {ACCEPTED_FILES}"
        ) from None
    if info.format not in FILE_FORMATS:
        raise AudioError(
            "unsupported_format",
            f"{what} is {info.format} audio, which is not supported; accepted: {ACCEPTED_FILES}",
        )
    check_rate(int(info.samplerate))
    check_channels(int(info.channels))
    cut = _wav_truncated(data) if info.format in ("WAV", "WAVEX") else None
    if cut is not None:
        raise AudioError(
            "truncated_audio",
            f"the WAV file is truncated: its header declares {cut[0]} bytes of audio but {cut[1]} are present",
        )
    if info.format == "OGG" and _ogg_truncated(data):
        raise AudioError(
            "truncated_audio",
            f"the OGG file {what} is truncated: it does not end with a complete end-of-stream page",
        )
    if info.frames >= UNKNOWN_LENGTH:
        raise AudioError(
            "unknown_length",
            f"the {info.format} header of {what} does not declare its length (total "
            "samples 0, as streaming encoders write); re-encode it with its length, or send WAV",
        )
    if info.frames / info.samplerate > max_seconds:
        raise AudioError(
            "audio_too_long",
            f"the file has {info.frames / info.samplerate:.1f} s of audio; at most {max_seconds:g} s are accepted",
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(
            "corrupt_audio",
            f"the {info.format} header was read but decoding failed ({e}): the file is truncated or corrupt",
        ) from None
    if len(samples) == 0:
        raise AudioError("no_audio", f"the {info.format} file decoded to 0 samples: it is empty or truncated")
    if not np.isfinite(samples).all():
        raise AudioError("invalid_samples", "the file contains NaN or infinite samples")
    return DecodedFile(np.clip(samples, -1.0, 1.0), int(rate), info.format)

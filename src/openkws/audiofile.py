"""Audio files on this machine (CLI, :meth:`openkws.KeywordSpotter.detect_file`): read them with
errors that name the file, the accepted formats and what to do, before anything is uploaded.

Example:
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
    ...     _ = f.write(b"not audio"); f.flush()
    ...     try:
    ...         check_audio_file(f.name)
    ...     except AudioError as e:
    ...         print(e.code, "|", e.message.split(" (libsndfile")[0])
    unsupported_format | ....txt is not a WAV, FLAC or OGG (Vorbis or Opus) file
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from openkws.audio import ACCEPTED_FILES, FILE_FORMATS, AudioError, DecodedFile, decode_file


def _convert_hint(p: Path) -> str:
    return f"convert it, e.g. `ffmpeg -i {p} -ac 1 -ar 16000 {p.with_suffix('.wav').name}`"


def check_audio_file(path: Path | str) -> str:
    """The file's container format (``WAV``, ``FLAC``, ``OGG``); raises :class:`AudioError`."""
    p = Path(path)
    if p.is_dir():
        raise AudioError("unreadable_file", f"{p} is a directory; give an audio file ({ACCEPTED_FILES})")
    try:
        with open(p, "rb") as f:
            head = f.read(1)
    except OSError as e:
        raise AudioError("unreadable_file", f"cannot read {p}: {e.strerror or e}") from None
    if not head:
        raise AudioError("empty_audio", f"{p} is empty; give a {ACCEPTED_FILES} file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        reason = getattr(e, "error_string", None) or str(e).rsplit(": ", 1)[-1]
        raise AudioError(
            "unsupported_format",
            f"{p} is not a {ACCEPTED_FILES} file (libsndfile: {reason.rstrip('.')}); {_convert_hint(p)}",
        ) from None
    if info.format not in FILE_FORMATS:
        raise AudioError(
            "unsupported_format",
            f"{p} is {info.format} audio; accepted: {ACCEPTED_FILES}; {_convert_hint(p)}",
        )
    return str(info.format)


def read_audio_file(path: Path | str, max_seconds: float = float("inf")) -> DecodedFile:
    """Decode a local WAV/FLAC/OGG file (float32 [n, channels]); raises :class:`AudioError`."""
    check_audio_file(path)
    try:
        return decode_file(Path(path).read_bytes(), max_seconds)
    except AudioError as e:
        raise AudioError(e.code, f"{path}: {e.message}") from None

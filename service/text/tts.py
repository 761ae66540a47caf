"""espeak-ng speech synthesis for the service: the renditions behind acoustic keyword proxies.

This is the one espeak-ng implementation in the project: :mod:`training.data.tts` builds its
multi-engine voice registry on top of it, so an ``espeak:<accent>+<variant>`` voice with a given
seed gives the same audio at training and at serving time.

A voice name is espeak-ng's ``<accent>+<variant>`` (e.g. ``en-us+m3``). Pitch (``-p``) and speed
(``-s``) are perturbations drawn from ``(seed, "espeak:" + name, text)``, so synthesis is
deterministic. Output is :data:`service.constants.SAMPLE_RATE` mono float32, peak-normalised to
:data:`PEAK`, with espeak's own leading and trailing silence.

Example:
    >>> tts = EspeakTTS()
    >>> waves = tts.renditions("hey jarvis", voices=PROXY_VOICES[:2])
    >>> len(waves), waves[0].dtype, 0.3 < len(waves[0]) / 16_000 < 3.0
    (2, dtype('float32'), True)
    >>> EspeakTTS(binary="/nonexistent/espeak-ng").available()
    False
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.constants import SAMPLE_RATE

ESPEAK_BINARY = "espeak-ng"
PEAK = 0.7  # common output peak: engines differ by >10 dB otherwise
TIMEOUT_S = 60.0
# Voices of acoustic keyword proxies: plain, intelligible espeak-ng training voices over accents
# and both sexes (none of training.data.tts.HELDOUT_VOICES, so synthetic held-out tests stay unseen).
PROXY_VOICES: tuple[str, ...] = (
    "en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f3", "en-us+f4", "en-029+f1", "en-gb-scotland+m2", "en-us+klatt",
)  # fmt: skip


class TTSError(RuntimeError):
    """A synthesis engine failed or produced no audio."""


class TTSUnavailable(TTSError):
    """The synthesis engine is not installed (or not at the configured path)."""


def stable_hash(*parts: object) -> int:
    """A process-independent 32-bit hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def perturbation_rng(seed: int, voice_id: str, text: str) -> np.random.Generator:
    """The generator that draws a rendition's perturbations, fixed by (seed, voice id, text)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stable_hash(voice_id, text)])


def wav_bytes_to_array(data: bytes) -> tuple[np.ndarray, int]:
    """Parse PCM16 RIFF bytes, tolerating streamed headers whose sizes are bogus (espeak --stdout)."""
    if len(data) < 44 or data[:4] != b"RIFF":
        raise TTSError("engine returned no WAV data")
    pos, rate, channels = 12, 0, 1
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
        elif cid == b"data":
            end = len(data) if size >= 0x7FFFFFFF or body + size > len(data) else body + size
            pcm = (
                np.frombuffer(data[body : end - ((end - body) % 2)], dtype="<i2").astype(np.float32) / 32768.0
            )
            if channels > 1:
                pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels).mean(axis=1)
            return pcm, rate
        pos = body + size + (size & 1)
    raise TTSError("WAV data chunk not found")


def to_16k(wave: np.ndarray, rate: int) -> np.ndarray:
    """Resample to SAMPLE_RATE, mono float32, peak-normalised to :data:`PEAK`."""
    wave = np.asarray(wave, dtype=np.float32)
    if rate != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak < 1e-4:
        raise TTSError("engine produced silence")
    return (wave * (PEAK / peak)).astype(np.float32)


def run_engine(cmd: list[str], text: str) -> bytes:
    """Run a synthesis command with ``text`` on stdin; its stdout. A missing binary is TTSUnavailable."""
    try:
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise TTSUnavailable(f"{cmd[0]} is not installed or not executable") from None
    except subprocess.TimeoutExpired:
        raise TTSError(f"{cmd[0]} did not finish within {TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise TTSError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:300]}")
    return proc.stdout


def espeak(text: str, name: str, rng: np.random.Generator, binary: str = ESPEAK_BINARY) -> np.ndarray:
    """One espeak-ng rendition of ``text`` with voice ``name``; pitch and speed drawn from ``rng``."""
    pitch = int(rng.integers(25, 76))  # espeak default 50
    speed = int(rng.integers(135, 211))  # words per minute; default 175
    data = run_engine([binary, "-v", name, "-p", str(pitch), "-s", str(speed), "--stdout"], text)
    return to_16k(*wav_bytes_to_array(data))


@dataclass(frozen=True)
class EspeakTTS:
    """espeak-ng at ``binary`` (a name on PATH or a path); call from a worker thread (it blocks)."""

    binary: str = ESPEAK_BINARY

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def synthesize(self, text: str, name: str, seed: int = 0) -> np.ndarray:
        """``text`` spoken by espeak-ng voice ``name``: deterministic per ``(text, name, seed)``."""
        text = " ".join(text.split())
        if not text:
            raise TTSError("nothing to synthesize: empty text")
        return espeak(text, name, perturbation_rng(seed, f"espeak:{name}", text), self.binary)

    def renditions(self, text: str, voices: Sequence[str] = PROXY_VOICES) -> list[np.ndarray]:
        """One rendition per voice, voice ``k`` with seed ``k`` (as the proxy experiment did)."""
        if not self.available():
            raise TTSUnavailable(f"{self.binary} is not installed or not on PATH")
        return [self.synthesize(text, v, seed=k) for k, v in enumerate(voices)]

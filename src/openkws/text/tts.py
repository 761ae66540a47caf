"""Offline speech synthesis for the service (espeak-ng and flite, via subprocess): the renditions
behind acoustic keyword proxies.

This is the one espeak-ng and flite implementation in the project: :mod:`openkws.training.data.tts` builds
its multi-engine voice registry on it, so a voice (``espeak:<accent>+<variant>``, ``flite:<name>``)
with a given seed gives the same audio at training and at serving time.

Perturbations (espeak-ng pitch ``-p`` and speed ``-s``, flite duration stretch) are drawn from
``(seed, voice id, text)``, so synthesis is deterministic. Output is
:data:`openkws.constants.SAMPLE_RATE` mono float32, peak-normalised to :data:`PEAK`, with the
engine's own leading and trailing silence.

:data:`PROXY_VOICES` mixes both engines: on real speech (Asterisk, 120 clips) acoustic proxies from
these 8 voices reach 5.0% / 21.7% easy / hard-pair EER, espeak-ng voices alone 9.2% / 26.7%, text
proxies 8.3% / 28.3%.

Example:
    >>> tts = ProxyTTS()
    >>> waves = tts.renditions("hey jarvis", voices=("espeak:en-us+m3", "flite:slt"))
    >>> len(waves), waves[0].dtype, all(0.3 < len(w) / 16_000 < 3.0 for w in waves)
    (2, dtype('float32'), True)
    >>> ProxyTTS(espeak_binary="/nonexistent/espeak-ng").missing()
    ['/nonexistent/espeak-ng']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from openkws.constants import SAMPLE_RATE

ESPEAK_BINARY = "espeak-ng"
FLITE_BINARY = "flite"
PEAK = 0.7  # common output peak: engines differ by >10 dB otherwise
TIMEOUT_S = 60.0
# Voices of acoustic keyword proxies: plain, intelligible training voices of both engines (none of
# openkws.training.data.tts.HELDOUT_VOICES, so synthetic held-out tests stay unseen). Voice k uses seed k.
PROXY_VOICES: tuple[str, ...] = (
    "espeak:en-us+m3", "espeak:en-us+f2", "flite:slt", "flite:kal",
    "espeak:en-gb+m1", "flite:rms", "espeak:en-us+f4", "espeak:en-029+f1",
)  # fmt: skip
ENGINES = ("espeak", "flite")


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


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono ``samples`` at ``rate`` -> float32 at :data:`~openkws.constants.SAMPLE_RATE`: the one
    whole-clip resampler of the package (TTS output, evaluation clips, benchmark audio). soxr "HQ",
    the same samples a stream's resampler (:mod:`openkws.engine.stream_input`) gives for one clip.

    >>> to_16k(np.ones(8000, np.float32), 8000).shape
    (16000,)
    """
    wave = np.asarray(samples, dtype=np.float32)
    if rate == SAMPLE_RATE:
        return wave
    return np.asarray(soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)


def peak_normalize(wave: np.ndarray) -> np.ndarray:
    """Scale a rendition to the common output peak :data:`PEAK`; silence is a :class:`TTSError`."""
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
    return peak_normalize(to_16k(*wav_bytes_to_array(data)))


def flite(text: str, name: str, rng: np.random.Generator, binary: str = FLITE_BINARY) -> np.ndarray:
    """One flite rendition of ``text`` with voice ``name``; duration stretch drawn from ``rng``."""
    stretch = float(rng.uniform(0.85, 1.25))
    # kal16 is the 16 kHz build of the same kal diphones: one identity, better audio.
    flite_name = "kal16" if name == "kal" else name
    with tempfile.TemporaryDirectory(prefix="openkws-flite-") as tmp:
        out = os.path.join(tmp, "out.wav")
        cmd = [
            binary,
            "-voice",
            flite_name,
            "--setf",
            f"duration_stretch={stretch:.3f}",
            "-t",
            text,
            "-o",
            out,
        ]
        run_engine(cmd, "")
        if not os.path.exists(out):
            raise TTSError(f"{binary} wrote no audio for {text!r}")
        data = Path(out).read_bytes()
    return peak_normalize(to_16k(*wav_bytes_to_array(data)))


@dataclass(frozen=True)
class ProxyTTS:
    """espeak-ng and flite at the given executables (names on PATH or paths); blocking, so call it
    from a worker thread."""

    espeak_binary: str = ESPEAK_BINARY
    flite_binary: str = FLITE_BINARY

    def binaries(self, voices: Sequence[str] = PROXY_VOICES) -> list[str]:
        """The executables that ``voices`` need."""
        need = {v.split(":", 1)[0] for v in voices}
        return [b for e, b in (("espeak", self.espeak_binary), ("flite", self.flite_binary)) if e in need]

    def missing(self, voices: Sequence[str] = PROXY_VOICES) -> list[str]:
        """The executables ``voices`` need that cannot be found (empty: all there)."""
        return [b for b in self.binaries(voices) if shutil.which(b) is None]

    def synthesize(self, text: str, voice: str, seed: int = 0) -> np.ndarray:
        """``text`` spoken by ``voice`` (``espeak:<name>`` or ``flite:<name>``): deterministic per seed."""
        engine, _, name = voice.partition(":")
        if engine not in ENGINES or not name:
            raise KeyError(f"unknown voice {voice!r}; ids look like 'espeak:en-us+m3' or 'flite:slt'")
        text = " ".join(text.split())
        if not text:
            raise TTSError("nothing to synthesize: empty text")
        rng = perturbation_rng(seed, voice, text)
        if engine == "espeak":
            return espeak(text, name, rng, self.espeak_binary)
        return flite(text, name, rng, self.flite_binary)

    def renditions(self, text: str, voices: Sequence[str] = PROXY_VOICES) -> list[np.ndarray]:
        """One rendition per voice, voice ``k`` with seed ``k`` (as the proxy experiment did)."""
        missing = self.missing(voices)
        if missing:
            raise TTSUnavailable(f"{' and '.join(missing)} not installed or not on PATH")
        return [self.synthesize(text, v, seed=k) for k, v in enumerate(voices)]

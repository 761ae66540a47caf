"""Small audio helpers shared by the data layer: silence trimming and 16 kHz PCM16 WAV I/O.

Example:
    >>> import numpy as np
    >>> tone = np.sin(np.arange(8000) / 5.0).astype(np.float32)
    >>> wave = np.concatenate([np.zeros(16000, np.float32), tone, np.zeros(16000, np.float32)])
    >>> out = trim_silence(wave, lead_ms=100, tail_ms=100)
    >>> len(out) == 8000 + 2 * 1600
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from openkws.constants import SAMPLE_RATE

FRAME_MS = 10
TRIM_TOP_DB = 40.0  # frames quieter than the loudest frame by this much count as silence


def trim_silence(
    wave: np.ndarray,
    lead_ms: float = 100.0,
    tail_ms: float = 100.0,
    top_db: float = TRIM_TOP_DB,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Cut leading/trailing silence, then keep exactly ``lead_ms``/``tail_ms`` around the speech.

    Where the engine left less silence than asked, zeros are added, so every clip has the same
    kind of short natural margin. Silent input raises ``ValueError`` (there is nothing to keep).
    """
    wave = np.asarray(wave, dtype=np.float32)
    hop = sample_rate * FRAME_MS // 1000
    n = len(wave) // hop
    if n == 0:
        raise ValueError("audio shorter than one 10 ms frame")
    energy = (wave[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    peak = float(energy.max())
    if peak <= 1e-10:
        raise ValueError("audio is silent")
    active = np.flatnonzero(10.0 * np.log10(energy / peak + 1e-20) > -top_db)
    start, end = int(active[0]) * hop, min(len(wave), (int(active[-1]) + 1) * hop)
    lead, tail = int(lead_ms * sample_rate / 1000), int(tail_ms * sample_rate / 1000)
    out = wave[max(0, start - lead) : min(len(wave), end + tail)]
    pad_front = max(0, lead - start)
    pad_back = max(0, end + tail - len(wave))
    if pad_front or pad_back:
        out = np.pad(out, (pad_front, pad_back))
    return out.astype(np.float32)


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono PCM16 WAV atomically (temp file + rename), so a killed job leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def read_wav(path: str | Path) -> np.ndarray:
    """Read a mono 16 kHz WAV as float32; any other rate raises ``ValueError``."""
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate}, expected {SAMPLE_RATE}")
    return np.asarray(wave.mean(axis=1), dtype=np.float32)


def wav_duration(path: str | Path) -> float:
    """Duration in seconds from the header only."""
    return float(sf.info(str(path)).duration)

"""Audio sources for the streams protocol: recorded prompts, TTS running text, music, noise.

Every negative segment carries the text spoken in it (``""`` for music and noise), so a keyword's
false alarms are counted only on audio that does not contain that keyword's text
(:func:`contains_text`); the hours that count for a keyword exclude the segments that do.

Recorded human speech (the Asterisk prompts) is evaluation only: nothing here feeds training or
threshold tuning. TTS running text is split from the calibration bank's (:mod:`..calibration_bank`)
by sentence parity and by voice, and the bank's music is synthetic, so the bank never sees the
evaluation's audio.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from openkws.constants import SAMPLE_RATE
from openkws.text.tts import TTSError, to_16k
from openkws.training.data.asterisk import _NON_SPEECH_RE, decode_g722, g722_files, read_transcripts
from openkws.training.data.audio import trim_silence
from openkws.training.data.streams import fortune_sentences
from openkws.training.data.tts import synthesize

MOH_DIR = Path("/usr/share/asterisk/moh")
MOH_PACKAGE = "asterisk-moh-opsound-wav"
SPEECH_RMS = 0.05  # ~ -26 dBFS: every speech segment (recorded or TTS) is levelled to this
MIN_NEGATIVE_WORDS = 5  # "longer than four words"
# Evaluation TTS voices for running text and babble; the calibration bank uses others (BANK_VOICES).
EVAL_TTS_VOICES = (
    "flite:slt",
    "flite:rms",
    "flite:awb",
    "espeak:en-gb-x-rp+m1",
    "espeak:en-us+f3",
    "espeak:en-029+m2",
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Segment:
    """A piece of negative audio and the words spoken in it."""

    name: str
    kind: str  # "recorded", "tts", "music", "noise", "folder"
    audio: np.ndarray
    text: str = ""


def words_of(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower().replace("-", " "))


def contains_text(transcript: str, keyword: str) -> bool:
    """Whether ``keyword`` occurs in ``transcript`` as a whole-word sequence (case-insensitive).

    >>> contains_text("Please say the number one now", "one"), contains_text("someone", "one")
    (True, False)
    """
    t, k = " ".join(words_of(transcript)), " ".join(words_of(keyword))
    return bool(k) and f" {k} " in f" {t} "


def level(wave: np.ndarray, rms: float = SPEECH_RMS) -> np.ndarray:
    wave = np.asarray(wave, np.float32)
    r = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) if len(wave) else 0.0
    return wave if r < 1e-6 else (wave * (rms / r)).astype(np.float32)


def recorded_negatives(min_words: int = MIN_NEGATIVE_WORDS) -> list[Segment]:
    """The Asterisk English prompts with at least ``min_words`` spoken words, levelled, with transcripts."""
    texts, files = read_transcripts(), g722_files()
    out = []
    for name in sorted(set(texts) & set(files)):
        spoken = _NON_SPEECH_RE.sub(" ", texts[name])
        if len(words_of(spoken)) < min_words:
            continue
        out.append(Segment(f"asterisk:{name}", "recorded", level(decode_g722(files[name])), spoken))
    return out


def read_audio(path: Path) -> np.ndarray:
    """Any soundfile-readable file -> 16 kHz mono float32."""
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return to_16k(wave.mean(axis=1), int(rate))


def music_tracks(directory: Path = MOH_DIR) -> list[Segment]:
    """The music-on-hold tracks (8 kHz, resampled), levelled like speech."""
    files = sorted(directory.glob("*.wav")) if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no music in {directory}; install apt package {MOH_PACKAGE}")
    return [Segment(f"music:{f.stem}", "music", level(read_audio(f)), "") for f in files]


def folder_negatives(directory: Path) -> list[Segment]:
    """Every audio file under ``directory``; a ``<name>.txt`` beside it gives its transcript."""
    exts = {".wav", ".flac", ".ogg", ".mp3"}
    files = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no audio files (.wav/.flac/.ogg/.mp3) under {directory}")
    out = []
    for f in files:
        txt = f.with_suffix(".txt")
        out.append(
            Segment(
                f"folder:{f.relative_to(directory)}",
                "folder",
                read_audio(f),
                txt.read_text() if txt.is_file() else "",
            )
        )
    return out


def eval_sentences(parity: int = 1, min_words: int = 5, max_words: int = 25) -> list[str]:
    """Fortune sentences of one parity (odd: evaluation, even: calibration bank), fixed order."""
    return fortune_sentences(min_words, max_words)[parity::2]


def tts_segments(
    sentences: Sequence[str], seconds: float, voices: Sequence[str], seed: int, kind: str = "tts"
) -> list[Segment]:
    """About ``seconds`` of TTS sentences, one random voice each, levelled, with transcripts."""
    rng = np.random.default_rng(seed)
    out: list[Segment] = []
    total = 0
    order = rng.permutation(len(sentences))
    for i in order:
        if total >= seconds * SAMPLE_RATE:
            break
        text, voice = sentences[int(i)], voices[int(rng.integers(len(voices)))]
        try:
            wave = trim_silence(synthesize(text, voice, seed=int(rng.integers(2**31))), 50, 50)
        except (TTSError, ValueError):
            continue
        out.append(Segment(f"{kind}:{voice}:{int(i)}", kind, level(wave), text))
        total += len(wave)
    return out


def concat(
    segments: Sequence[Segment], rng: np.random.Generator, gap_s: tuple[float, float] = (0.2, 0.8)
) -> tuple[np.ndarray, list[tuple[int, int, Segment]]]:
    """Join segments with short silent gaps -> (audio, [(start, end, segment)] in samples)."""
    parts, spans, pos = [], [], 0
    for seg in segments:
        gap = np.zeros(int(rng.uniform(*gap_s) * SAMPLE_RATE), np.float32)
        parts += [gap, seg.audio]
        spans.append((pos + len(gap), pos + len(gap) + len(seg.audio), seg))
        pos += len(gap) + len(seg.audio)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), spans

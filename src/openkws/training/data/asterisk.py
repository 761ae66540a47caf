"""Real-speech dev set from the Asterisk core English prompts (one US speaker, CC-BY-SA-3.0).

EVALUATION ONLY: recorded human speech is never used for training, so real-speech figures measure
generalisation from synthetic speech.

Sources (Debian packages): transcripts ``asterisk-core-sounds-en``
(``/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz``, ``name: text`` lines) and
16 kHz G.722 audio ``asterisk-core-sounds-en-g722``, decoded with the PyPI ``g722`` package.

Every prompt whose transcript normalises (shared G2P) to 1-:data:`MAX_WORDS` words is kept.
Non-speech parts of transcripts (``[beep tone]``, ``(10 seconds of silence)``, ``dot [.]`` ->
``dot``) are removed first; prompts left with no words, and text the G2P rejects, are dropped.
Output: ``<out>/clips/<name>.wav`` (``/`` in names becomes ``__``) and ``<out>/manifest.csv``
with ``path,text,phonemes,name,duration`` (``path`` relative to ``out``).
"""

from __future__ import annotations

import csv
import gzip
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.text.g2p import G2P, G2PError
from openkws.training.data.audio import write_wav

TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
G722_PACKAGE = "asterisk-core-sounds-en-g722"
MAX_WORDS = 4
G722_BITRATE = 64_000
# Bracketed / parenthesised / angle-bracketed parts describe sounds, not words ("[beep]", "(silence)").
_NON_SPEECH_RE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_TYPOS = {"exclaimation-point": "exclamation-point"}  # transcript typo; the recording says it right


@dataclass(frozen=True)
class Prompt:
    name: str  # e.g. "digits/7"
    text: str  # transcript as shipped
    audio: Path


def read_transcripts(path: Path = TRANSCRIPTS) -> dict[str, str]:
    """``name -> text`` from the gzipped ``name: text`` file (comments skipped)."""
    out: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def g722_files() -> dict[str, Path]:
    """``name -> .g722 path`` for the installed prompts (via ``dpkg -L``, else a directory walk)."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", G722_PACKAGE], capture_output=True, text=True, check=True
        ).stdout
        files = [Path(p) for p in listing.splitlines() if p.endswith(".g722")]
    except (OSError, subprocess.CalledProcessError):
        files = list(Path("/usr/share/asterisk/sounds").rglob("*.g722"))
    out: dict[str, Path] = {}
    for f in files:
        parts = f.parts
        # .../sounds/<voice dir>/<name...>.g722 -> name relative to the voice dir
        idx = parts.index("sounds") + 2 if "sounds" in parts else len(parts) - 1
        out["/".join(parts[idx:])[: -len(".g722")]] = f
    if not out:
        raise FileNotFoundError(f"no .g722 prompts found; install apt package {G722_PACKAGE}")
    return out


def decode_g722(path: Path) -> np.ndarray:
    """16 kHz G.722 file -> float32 samples."""
    import G722  # lazy: optional codec, only for the Asterisk evaluation prompts

    pcm = np.asarray(G722.G722(SAMPLE_RATE, G722_BITRATE).decode(path.read_bytes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def short_prompts(
    g2p: G2P | None = None, max_words: int = MAX_WORDS
) -> list[tuple[Prompt, str, tuple[str, ...]]]:
    """Prompts with audio whose transcript is 1..max_words words: (prompt, normalised text, phonemes)."""
    g2p = g2p or G2P()
    texts, files = read_transcripts(), g722_files()
    out: list[tuple[Prompt, str, tuple[str, ...]]] = []
    for name in sorted(set(texts) & set(files)):
        raw = texts[name]
        spoken = _NON_SPEECH_RE.sub(" ", raw).strip()  # "dot [.]" -> "dot"; "(1 second of silence)" -> ""
        if not spoken:
            continue
        spoken = " ".join(_TYPOS.get(w, w) for w in spoken.split())
        try:
            pron = g2p(spoken)
        except G2PError:
            continue
        if len(pron.words) <= max_words:
            out.append((Prompt(name, raw, files[name]), pron.text, pron.phonemes))
    return out


def build_asterisk(out: Path, limit: int | None = None, g2p: G2P | None = None) -> list[dict[str, str]]:
    """Decode the short prompts to WAV and write ``out/manifest.csv``; returns its rows."""
    rows: list[dict[str, str]] = []
    prompts = short_prompts(g2p)
    for prompt, text, phonemes in prompts[:limit] if limit else prompts:
        wave = decode_g722(prompt.audio)
        rel = f"clips/{prompt.name.replace('/', '__')}.wav"
        write_wav(out / rel, wave)
        rows.append(
            {
                "path": rel,
                "text": text,
                "phonemes": " ".join(phonemes),
                "name": prompt.name,
                "duration": f"{len(wave) / SAMPLE_RATE:.3f}",
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "manifest.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "phonemes", "name", "duration"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "manifest.csv")
    return rows

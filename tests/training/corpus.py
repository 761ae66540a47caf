"""A tiny real TTS corpus for the training tests: a few hundred espeak-ng clips + manifest.

Uses the data layer's ``openkws.training.data.tts.synthesize`` when it imports, else espeak-ng directly.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from openkws.constants import SAMPLE_RATE
from openkws.text import G2P

TRAIN_WORDS = [
    "apple",
    "banana",
    "cherry",
    "window",
    "garden",
    "river",
    "mountain",
    "yellow",
    "purple",
    "orange",
    "seven",
    "eleven",
    "monday",
    "friday",
    "morning",
    "evening",
    "kitchen",
    "bedroom",
    "light",
    "music",
    "volume",
    "pause",
    "stop",
    "start",
    "forward",
    "backward",
    "weather",
    "camera",
    "picture",
    "rocket",
    "planet",
    "silver",
    "golden",
    "dragon",
    "tiger",
    "pencil",
    "button",
    "bottle",
    "candle",
    "doctor",
    "engine",
    "forest",
    "hammer",
    "island",
    "jacket",
]
DEV_WORDS = ["basket", "casket", "tunnel", "funnel", "copper", "hopper", "marble", "velvet"]
TRAIN_VOICES = ("en-us+m3", "en-us+f2", "en-gb+m1", "en-gb-x-rp+f3", "en-us-nyc+m5", "en-029+m2")
DEV_VOICES = ("en-us+m7", "en-gb-scotland+f1", "en-us+f4")


def _synth(text: str, voice: str, seed: int) -> np.ndarray:
    try:
        from openkws.training.data.tts import synthesize
    except ImportError:
        from openkws.text.tts import ProxyTTS

        return ProxyTTS().synthesize(text, f"espeak:{voice}", seed=seed)
    return synthesize(text, f"espeak:{voice}", seed=seed)


def build_corpus(root: Path, train_words=TRAIN_WORDS, dev_words=DEV_WORDS) -> Path:
    """Write wavs and ``manifest.csv`` under ``root``; return the manifest path (idempotent)."""
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    g2p = G2P()
    rows = []
    for split, words, voices in (("train", train_words, TRAIN_VOICES), ("dev", dev_words, DEV_VOICES)):
        for w in words:
            phon = " ".join(g2p(w).phonemes)
            for k, v in enumerate(voices):
                wave = _synth(w, v, seed=k)
                rel = f"wav/{split}/{w}_{k}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, wave, SAMPLE_RATE)
                rows.append([rel, w, phon, f"espeak:{v}", "espeak", f"{len(wave) / SAMPLE_RATE:.3f}", split])
    with open(manifest, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["path", "text", "phonemes", "voice", "engine", "duration", "split"])
        wr.writerows(rows)
    return manifest

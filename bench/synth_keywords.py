"""A synthetic keyword manifest for `openkws eval streams`: each keyword text spoken by one held-out
TTS voice (never a proxy voice, never a training voice), so choices can be made without recorded speech.

    python bench/synth_keywords.py --texts data/eval/asterisk/manifest.csv --out runs/synth_kw

Only the *texts* of the source manifest are read (never its audio). Voice ``i % len(VOICES)`` speaks
row ``i``, with seed ``i``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from openkws.training.data.audio import write_wav
from openkws.training.data.tts import HELDOUT_VOICES, synthesize

# Held-out voices that no training config of the shipped model used (piper:joe was a training voice).
VOICES = ("flite:awb", "espeak:en-us-nyc+m5", "espeak:en-gb-scotland+klatt2", "espeak:en-029+linda")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--texts", type=Path, required=True, help="CSV with a 'text' column")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    assert set(VOICES) <= HELDOUT_VOICES, "every voice must be a held-out voice"
    with a.texts.open(newline="") as f:
        texts = sorted({r["text"].strip().lower() for r in csv.DictReader(f) if r["text"].strip()})
    (a.out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, t in enumerate(texts):
        v = VOICES[i % len(VOICES)]
        rel = f"clips/{i:04d}.wav"
        write_wav(a.out / rel, synthesize(t, v, seed=i))
        rows.append({"path": rel, "text": t, "voice": v})
    with (a.out / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "voice"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} clips -> {a.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()

"""Spot typed keywords in a WAV file with the in-process API (no server, no database).

    python examples/spot_keywords.py                      # speaks "hey jarvis" with espeak-ng first
    python examples/spot_keywords.py clip.wav "hey jarvis" "turn on the lights"

The file is fed in 20 ms chunks at its own sample rate, as a live source would be.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf
from openkws import KeywordSpotter


def main(argv: list[str]) -> int:
    if argv:
        wav, keywords = Path(argv[0]), argv[1:] or ["hey jarvis"]
    else:  # no file given: make one
        wav, keywords = Path(tempfile.mkdtemp()) / "hey_jarvis.wav", ["hey jarvis"]
        subprocess.run(["espeak-ng", "-w", str(wav), "well, hey jarvis, what time is it?"], check=True)

    kws = KeywordSpotter()  # the packaged default model
    for text in keywords:
        kw = kws.add_keyword(text)
        print(f"keyword {kw.id}: {kw.text!r} -> {' '.join(kw.phonemes)} (threshold {kw.threshold})")

    audio, rate = sf.read(wav, dtype="int16")
    stream = kws.create_stream(sample_rate=rate)
    chunk = rate // 50
    for i in range(0, len(audio), chunk):
        stream.accept_waveform(audio[i : i + chunk])
        for d in stream.detections():
            print(f"{d.start_ms / 1000:6.2f}-{d.end_ms / 1000:.2f} s  {d.text!r}  score {d.score:.3f}")
    stream.input_finished()
    for d in stream.detections():
        print(f"{d.start_ms / 1000:6.2f}-{d.end_ms / 1000:.2f} s  {d.text!r}  score {d.score:.3f}")

    n = len(kws.detect_file(wav))  # the same in one call
    print(f"{n} detection(s) in {wav.name} ({len(audio) / rate:.2f} s at {rate} Hz)")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

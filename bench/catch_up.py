"""What a VAD onset's pre-roll burst costs the other streams' step, in process and in CPU time (a
busy machine inflates wall time, not this). Not a test; prints JSON.

    python -m bench.catch_up --streams 100 --seconds 20 --out runs/catch_up.json

``streams`` gated streams (``vad: on``) play 25%-speech audio from different offsets, 100 ms per
tick, on the engine's clock (no real time). Two schedules of the same audio:

* ``at_once`` (before issue 24's catch-up path): one batch per tick, every stream decodes all it has,
  so a stream whose gate opened adds its whole ~1.2 s pre-roll to everyone's batch;
* ``catch_up`` (the service now): the tick's live batch holds the streams with at most one live step
  (``--step-ms``) to decode, each capped to it, plus ``CATCH_UP_PLACES`` (one) catch-up stream; the other
  catch-up streams run in a second batch after it (the live queue is empty by then).

Per schedule: the CPU seconds of the batch the live streams wait for, per tick (p50, p95, max), the
total CPU, and the events, which must be the same in both (checked).
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

TICK = SAMPLE_RATE // 10


def run(
    model: Path, audio: np.ndarray, streams: int, keywords: int, step: int | None, places: int | None = None
) -> dict[str, Any]:
    from bench.gating import loaded_spotter
    from openkws.engine.vad import VadConfig
    from openkws.server.batcher import CATCH_UP_PLACES

    sp = loaded_spotter(model, keywords)
    ss = [sp.create_stream(vad=VadConfig()) for _ in range(streams)]
    offsets = [(k * 37 * TICK) % len(audio) for k in range(streams)]
    events: list[tuple[int, int, float, float]] = []
    live_cpu: list[float] = []
    c0 = time.process_time()
    for i in range(0, len(audio), TICK):
        for k, s in enumerate(ss):
            j = (offsets[k] + i) % len(audio)
            s.accept_waveform(audio[j : j + TICK])
        if step is None:
            batches = [list(range(streams))]
        else:
            live = [k for k, s in enumerate(ss) if s.backlog_samples <= step]
            later = [k for k, s in enumerate(ss) if s.backlog_samples > step]
            share = (CATCH_UP_PLACES if places is None else places) if live else len(later)
            batches = [live + later[:share], later[share:]]
        for n, batch in enumerate(b for b in batches if b):
            t = time.process_time()
            for k, r in zip(batch, sp.decode_streams([ss[k] for k in batch], step), strict=True):
                events += [(k, d.keyword_id, d.end_ms, d.decided_ms) for d in r.detections]
            if n == 0:
                live_cpu.append(time.process_time() - t)
    for k, s in enumerate(ss):  # drain what a capped schedule still holds, then flush
        s.input_finished()
        events += [(k, d.keyword_id, d.end_ms, d.decided_ms) for d in sp.decode(s, step).detections]
    cpu = time.process_time() - c0
    ms = np.array(live_cpu) * 1000.0
    return {
        "schedule": "at_once" if step is None else "catch_up",
        "step_ms": None if step is None else 1000 * step // SAMPLE_RATE,
        "catch_up_places": None if step is None else (CATCH_UP_PLACES if places is None else places),
        "streams": streams,
        "live_batch_cpu_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
            "max": round(float(ms.max()), 1),
        },
        "cpu_s": round(cpu, 2),
        "rtf_per_stream": round(cpu / (streams * len(audio) / SAMPLE_RATE), 5),
        "events": sorted(events),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.speech_audio import speech_clip_marked

    ap = argparse.ArgumentParser(prog="python -m bench.catch_up")
    ap.add_argument("--model", default="src/openkws/models/default")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--keywords", type=int, default=100)
    ap.add_argument("--speech-fraction", type=float, default=0.25)
    ap.add_argument("--step-ms", type=int, default=400, help="the service's LIVE_STEP_MS")
    ap.add_argument(
        "--places",
        type=int,
        default=None,
        help="catch-up jobs in the live batch (0: none); default: the batcher's CATCH_UP_PLACES",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    audio, _ = speech_clip_marked(a.seconds, a.speech_fraction)
    doc: dict[str, Any] = {"model": a.model, "load_average": [round(x, 2) for x in os.getloadavg()]}
    rows = [
        run(Path(a.model), audio, a.streams, a.keywords, step, a.places)
        for step in (None, a.step_ms * SAMPLE_RATE // 1000)
    ]
    doc["same_events"] = rows[0]["events"] == rows[1]["events"]
    doc["events"] = len(rows[0]["events"])
    doc["rows"] = [{k: v for k, v in r.items() if k != "events"} for r in rows]
    doc["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(doc, indent=2), flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if doc["same_events"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

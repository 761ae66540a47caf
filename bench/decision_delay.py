"""Decision delay by the engine: from the end of a spoken keyword to its event (issue 21, row D).

Streams of running TTS speech (espeak-ng, keyword-free fortune sentences) with an enrolled keyword,
rendered separately by the same voice, placed between two sentences with short gaps, so the
keyword's end is known to the sample. The engine decodes each stream in 100 ms chunks through its
public calls, with the keywords enrolled at their calibrated default sensitivity (0.5 FA/h on the
model's bank), and each decision rule is run on the same audio:

* ``hold``: today's rule (emit the best window ``hold_ms`` = 240 ms after the first crossing, or when
  the score falls below threshold);
* ``peak``: emit as soon as the score stops rising, at most 200 ms after the first crossing;
* ``peak+k2``: ``peak`` with 2-consecutive-frame persistence;
* ``hold+cohort``: ``hold`` on cohort-normalised scores (row N; thresholds from the bank on that scale).

The delay is algorithmic: the event's ``decided_ms`` (stream time of the audio that completed the
decision) minus the keyword's end; compute time is not counted, so machine load does not change it.
An event of the keyword counts for a placement when it is decided within 2 s after the keyword
ends and its window overlaps the keyword; more than one such event is a duplicate.

    python -m bench.decision_delay [--model DIR] [--streams 24] [--out runs/bench/decision_delay.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.calibration import DEFAULT_TARGET_FA_PER_HOUR, Calibrator
from openkws.engine.cohort import phone_count
from openkws.engine.spotter import DetectorConfig, Spotter
from openkws.settings import packaged_model_dir

KEYWORDS = ("hey jarvis", "turn on the lights", "play music", "okay computer", "stop the music", "alexa")
VOICES = ("espeak:en-us+f3", "espeak:en-gb-x-rp+m1", "espeak:en-029+m2", "espeak:en-us+m3")
RULES: dict[str, DetectorConfig] = {
    "hold": DetectorConfig(),
    "peak": DetectorConfig(decision="peak"),
    "peak+k2": DetectorConfig(decision="peak", persistence=2),
    "hold+cohort": DetectorConfig(cohort=True),  # cohort-normalised scores (row N), today's decision
}
CHUNK = SAMPLE_RATE // 10
MATCH_S = 2.0


@dataclass(frozen=True)
class Placed:
    keyword: str
    start_s: float
    end_s: float


def _render(text: str, voice: str, seed: int) -> np.ndarray:
    from openkws.training.data.audio import trim_silence
    from openkws.training.data.tts import synthesize

    return trim_silence(synthesize(text, voice, seed=seed), 20, 20)


def build_streams(n: int, seed: int = 0) -> list[tuple[np.ndarray, Placed]]:
    """``n`` streams: sentence, gap, keyword, gap, sentence (one voice each); the keyword's span."""
    from openkws.training.eval_streams.sources import eval_sentences, level

    sentences = eval_sentences(min_words=6, max_words=14)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kw, voice = KEYWORDS[i % len(KEYWORDS)], VOICES[(i // len(KEYWORDS)) % len(VOICES)]
        a, b = (sentences[int(j)] for j in rng.choice(len(sentences), 2, replace=False))
        parts = [_render(a, voice, i), None, _render(kw, voice, i), None, _render(b, voice, i + 1)]
        gaps = [np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE), np.float32) for _ in range(2)]
        parts[1], parts[3] = gaps
        start = len(parts[0]) + len(gaps[0])
        end = start + len(parts[2])
        audio = level(np.concatenate(parts))
        out.append((audio, Placed(kw, start / SAMPLE_RATE, end / SAMPLE_RATE)))
    return out


def _enroll(sp: Spotter, cal: Calibrator | None) -> dict[str, float]:
    prons = [sp.pronounce(t) for t in KEYWORDS]
    entries = sp.entries_from([(i + 1, "default", p.text, p.phonemes, 0.0) for i, p in enumerate(prons)])
    thr = {}
    for e in entries:
        t = (
            sp.default_threshold
            if cal is None
            else cal.threshold_for(e.proxy, DEFAULT_TARGET_FA_PER_HOUR, phone_count(e.phonemes))
        )
        thr[e.text] = float(np.clip(t, 0.0, 1.0))
    sp.index.replace_all([replace(e, threshold=thr[e.text]) for e in entries])
    return thr


def measure(
    model: Path, streams: list[tuple[np.ndarray, Placed]], name: str, cfg: DetectorConfig
) -> dict[str, Any]:
    sp = Spotter.load(model, config=cfg, device="cpu")
    cal = Calibrator.load(model, sp.spec.embedding_dim, sp.params.refractory_frames, cohort=sp.cohort)
    thr = _enroll(sp, cal)
    delays, duplicates, missed, other = [], 0, 0, 0
    for audio, p in streams:
        s = sp.create_stream()
        dets = []
        for i in range(0, len(audio), CHUNK):
            s.accept_waveform(audio[i : i + CHUNK])
            dets += sp.decode(s).detections
        s.input_finished()
        dets += sp.decode(s).detections
        mine = [
            d
            for d in dets
            if d.text == p.keyword
            and p.end_s - 0.5 <= d.decided_ms / 1e3 <= p.end_s + MATCH_S
            and d.start_ms / 1e3 < p.end_s
            and d.end_ms / 1e3 > p.start_s
        ]
        other += len(dets) - len(mine)
        if not mine:
            missed += 1
            continue
        duplicates += len(mine) - 1
        delays.append(min(d.decided_ms for d in mine) - 1e3 * p.end_s)
    d = np.asarray(delays, np.float64)
    return {
        "rule": name,
        "decision": cfg.decision,
        "persistence": cfg.persistence,
        "placed": len(streams),
        "detected": len(delays),
        "missed": missed,
        "duplicates": duplicates,
        "other_events": other,
        "p50_ms": round(float(np.percentile(d, 50)), 1) if len(d) else None,
        "p95_ms": round(float(np.percentile(d, 95)), 1) if len(d) else None,
        "max_ms": round(float(d.max()), 1) if len(d) else None,
        "thresholds": {k: round(v, 4) for k, v in thr.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decision_delay", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=packaged_model_dir())
    ap.add_argument("--streams", type=int, default=24, help="keyword placements (one stream each)")
    ap.add_argument("--rule", action="append", choices=sorted(RULES), help="repeatable; default all")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/decision_delay.json"))
    a = ap.parse_args(argv)
    if a.streams < 1:
        ap.error(f"--streams must be >= 1, got {a.streams}")
    streams = build_streams(a.streams)
    rows = [measure(a.model, streams, r, RULES[r]) for r in (a.rule or list(RULES))]
    print("| rule | detected | duplicates | other events | p50 | p95 | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['rule']} | {r['detected']}/{r['placed']} | {r['duplicates']} | {r['other_events']} | "
              f"{r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms |")  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"model": str(a.model), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Keywords at the very start of audio: the best score of a keyword against the silence ahead of it.

Each keyword is synthesized by four voices (espeak-ng en-us and en-gb, flite slt and kal), trimmed
to its first speech frame, and placed after 0, 80, 160, 240 and 500 ms of silence (then 0.5 s of
silence after it). Each rendition is fed to a fresh stream of the library's engine
(``KeywordSpotter().spotter``), and its score is the best cosine over every window the detector
evaluates (the public score hook) against the keyword's enrolled proxy: the score a detection would
report, independent of the threshold.

Two engine configurations: ``before`` is the engine without a pre-roll (``preroll_ms=0``, what main
did), ``after`` the default, whose streams start with the front-end's receptive field of virtual
silence. The target: after, every score at 0 ms is within 0.03 of the score at 500 ms. The two
placements differ by 500 ms = 6.25 feature hops, so part of what remains is the 80 ms hop's phase.

Run: ``python -m bench.leading_silence --out runs/bench/leading_silence.json`` (prints a markdown table).
``--phases`` instead scores the ``after`` engine at 500, 520, 540 and 560 ms of silence: how much a
keyword's score moves with its position within one 80 ms hop, whatever precedes it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import FrameScores
from openkws.engine.spotter import DetectorConfig
from openkws.engine.windows import speech_span
from openkws.kws import KeywordSpotter
from openkws.text.tts import ProxyTTS

KEYWORDS = ("hey jarvis", "computer", "turn on the lights", "stop", "play music")
VOICES = ("espeak:en-us", "espeak:en-gb", "flite:slt", "flite:kal")
SILENCES_MS = (0, 80, 160, 240, 500)
TAIL_S = 0.5
TARGET = 0.03
CONFIGS = {"before": 0, "after": None}  # preroll_ms: 0 = none (main), None = receptive field
PHASES_MS = (500, 520, 540, 560)  # quarter hops of the 80 ms feature hop


def best_score(kws: KeywordSpotter, keyword_id: int, audio: np.ndarray) -> float:
    """Best window cosine of one keyword over a whole clip, through a fresh engine stream."""
    proxy = kws.spotter.index.tenant(kws.tenant).by_id[keyword_id].proxy
    best = [-1.0]

    def hook(f: FrameScores) -> None:
        if len(f.embeddings):
            best[0] = max(best[0], float((f.embeddings @ proxy).max()))

    stream = kws.spotter.create_stream(tenant=kws.tenant, score_hook=hook)
    stream.accept_waveform(SAMPLE_RATE, audio)
    stream.input_finished()
    kws.spotter.decode(stream)
    return best[0]


def renditions(keywords: Sequence[str], voices: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """Each keyword by each voice (seed 0), cut at its first speech frame."""
    tts = ProxyTTS()
    out = {}
    for k in keywords:
        for v in voices:
            w = tts.synthesize(k, v, seed=0)
            out[(k, v)] = w[speech_span(w)[0] :]
    return out


def sweep(config: str, waves: dict[tuple[str, str], np.ndarray], silences: Sequence[int]) -> dict[str, float]:
    kws = KeywordSpotter(config=DetectorConfig(preroll_ms=CONFIGS[config]))
    ids = {k: kws.add_keyword(k).id for k in sorted({k for k, _ in waves})}
    tail = np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)
    out = {}
    for (k, v), w in waves.items():
        for ms in silences:
            audio = np.concatenate([np.zeros(ms * SAMPLE_RATE // 1000, np.float32), w, tail])
            out[f"{k}|{v}|{ms}"] = round(best_score(kws, ids[k], audio), 4)
    return out


def table(results: dict[str, dict[str, float]], keywords: Sequence[str], voices: Sequence[str],
          silences: Sequence[int]) -> str:  # fmt: skip
    head = " | ".join(f"{ms} ms" for ms in silences)
    lines = [
        f"| keyword | voice | engine | {head} | 0 ms − 500 ms |",
        "|---|---|---|" + "---:|" * (len(silences) + 1),
    ]
    for k in keywords:
        for v in voices:
            for cfg, res in results.items():
                row = [res[f"{k}|{v}|{ms}"] for ms in silences]
                gap = row[0] - res[f"{k}|{v}|{silences[-1]}"]
                lines.append(
                    f"| {k} | {v} | {cfg} | " + " | ".join(f"{x:.3f}" for x in row) + f" | {gap:+.3f} |"
                )
    return "\n".join(lines)


def summary(res: dict[str, float], keywords: Sequence[str], voices: Sequence[str], silences: Sequence[int]) -> dict[str, float]:  # fmt: skip
    gaps = np.array(
        [res[f"{k}|{v}|{silences[0]}"] - res[f"{k}|{v}|{silences[-1]}"] for k in keywords for v in voices]
    )
    return {
        "mean_gap": round(float(gaps.mean()), 4),
        "max_abs_gap": round(float(np.abs(gaps).max()), 4),
        "within_target": int((np.abs(gaps) <= TARGET).sum()),
        "cases": len(gaps),
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/leading_silence.json"))
    ap.add_argument("--phases", action="store_true", help="score the after engine at 500-560 ms instead")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    waves = renditions(KEYWORDS, VOICES)
    if args.phases:
        phases(waves, args.out)
        return
    results = {cfg: sweep(cfg, waves, SILENCES_MS) for cfg in CONFIGS}
    sums = {cfg: summary(r, KEYWORDS, VOICES, SILENCES_MS) for cfg, r in results.items()}
    print(table(results, KEYWORDS, VOICES, SILENCES_MS))
    print()
    for cfg, s in sums.items():
        print(
            f"{cfg}: score at 0 ms minus 500 ms: mean {s['mean_gap']:+.3f}, worst |gap| {s['max_abs_gap']:.3f}; "
            f"{s['within_target']}/{s['cases']} within {TARGET}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "keywords": KEYWORDS,
        "voices": VOICES,
        "silences_ms": SILENCES_MS,
        "target": TARGET,
        "scores": results,
        "summary": sums,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


def phases(waves: dict[tuple[str, str], np.ndarray], out: Path) -> None:
    res = sweep("after", waves, PHASES_MS)
    spreads = []
    print("| keyword | voice | " + " | ".join(f"{ms} ms" for ms in PHASES_MS) + " | spread |")
    print("|---|---|" + "---:|" * (len(PHASES_MS) + 1))
    for k, v in waves:
        row = [res[f"{k}|{v}|{ms}"] for ms in PHASES_MS]
        spreads.append(max(row) - min(row))
        print(f"| {k} | {v} | " + " | ".join(f"{x:.3f}" for x in row) + f" | {spreads[-1]:.3f} |")
    print(f"spread over the hop's phase: mean {np.mean(spreads):.3f}, worst {np.max(spreads):.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"phases_ms": PHASES_MS, "scores": res, "spreads": spreads}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

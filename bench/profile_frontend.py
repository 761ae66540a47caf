"""Per-component CPU profile of the engine: mel, speech embedding, acoustic head (frames + pool),
scoring and decisions, per call and per stream-second. Not a test; prints JSON.

    python -m bench.profile_frontend --streams 32 --seconds 10 --keywords 100 --out bench/out/profile.json

Streams are fed 100 ms of speech at a time, as the service does, either each decoded alone
(``--mode single``: ``decode_streams([s])``) or all together (``--mode batched``). Every ONNX
session is wrapped by a proxy that adds the calling thread's CPU time (``time.thread_time``) per
call; with one intra-op thread onnxruntime computes on the calling thread, so this is the CPU the
component costs, and it is hardly affected by other load on a shared machine (unlike wall time).
``scoring`` is ``openkws.engine.scoring.score_windows`` (windows against every keyword, thresholds);
``other`` is the rest of the step (decisions, Python bookkeeping, window assembly).

``--sweep-embedding`` also times the speech-embedding graph alone: one call of ``R`` rows against
``R`` calls of one row, under several session options (``openkws.engine.ort_options``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from openkws.constants import SAMPLE_RATE
from openkws.engine.ort_options import OrtOptions, session_options

STEP_S = 0.1


class TimedSession:
    """Delegates to an ``InferenceSession`` and accumulates CPU seconds and calls of ``run``."""

    def __init__(self, sess: Any, clock: Callable[[], float] = time.thread_time) -> None:
        self._sess = sess
        self._clock = clock
        self.cpu_s = 0.0
        self.calls = 0
        self.rows = 0

    def run(self, output_names: Any, feeds: dict[str, np.ndarray], *args: Any) -> Any:
        c0 = self._clock()
        out = self._sess.run(output_names, feeds, *args)
        self.cpu_s += self._clock() - c0
        self.calls += 1
        self.rows += int(next(iter(feeds.values())).shape[0])
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sess, name)


def speech_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Continuous synthetic speech (espeak-ng through the service benchmark's clip builder)."""
    from bench.speech_audio import speech_clip

    return speech_clip(seconds)


def instrument(sp: Any) -> dict[str, TimedSession]:
    """Wrap the spotter's sessions in :class:`TimedSession` proxies (in place)."""
    t = {
        "mel": TimedSession(sp.features.mel),
        "embedding": TimedSession(sp.features.embedding),
        "acoustic_frames": TimedSession(sp.encoders._frames),
        "acoustic_pool": TimedSession(sp.encoders._pool),
    }
    sp.features.mel, sp.features.embedding = t["mel"], t["embedding"]
    sp.encoders._frames, sp.encoders._pool = t["acoustic_frames"], t["acoustic_pool"]
    scoring = TimedSession(None)
    import openkws.engine.spotter as spotter_module

    inner = spotter_module.score_windows

    def timed_score(*args: Any, **kwargs: Any) -> Any:
        c0 = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            scoring.cpu_s += time.thread_time() - c0
            scoring.calls += 1

    spotter_module.score_windows = timed_score  # this process only
    t["scoring"] = scoring
    return t


def profile(
    model: Path, audio: np.ndarray, streams: int, keywords: int, mode: str, options: OrtOptions | None = None
) -> dict[str, Any]:
    from bench.speech_audio import phrases
    from openkws.engine.runtime import limit_blas_threads
    from openkws.engine.spotter import Spotter

    limit_blas_threads(1)
    sp = Spotter.load(model, device="cpu")
    if options is not None:
        from openkws.engine.ort_options import apply_options

        apply_options(sp, model, options)
    texts = phrases(keywords, seed=1)
    prons = [sp.pronounce(t) for t in texts]
    sp.index.replace_all(
        sp.entries_from([(i + 1, "default", p.text, p.phonemes, 0.99) for i, p in enumerate(prons)])
    )
    timers = instrument(sp)
    ss = [sp.create_stream() for _ in range(streams)]
    step = int(STEP_S * SAMPLE_RATE)
    c0 = time.thread_time()
    for i in range(0, len(audio), step):
        # each stream starts at another place of the clip, as real streams are not in lock-step
        for k, s in enumerate(ss):
            j = (i + k * 37 * step) % len(audio)
            s.accept_waveform(audio[j : j + step])
        if mode == "batched":
            sp.decode_streams(ss)
        else:
            for s in ss:
                sp.decode_streams([s])
    total = time.thread_time() - c0
    stream_s = streams * len(audio) / SAMPLE_RATE
    rows: dict[str, Any] = {}
    for name, t in timers.items():
        rows[name] = {
            "cpu_s": round(t.cpu_s, 4),
            "calls": t.calls,
            "ms_per_call": round(1000 * t.cpu_s / max(1, t.calls), 4),
            "rtf_per_stream": round(t.cpu_s / stream_s, 6),
            "share": round(t.cpu_s / total, 3) if total else None,
        }
    other = total - sum(t.cpu_s for t in timers.values())
    rows["other"] = {
        "cpu_s": round(other, 4),
        "rtf_per_stream": round(other / stream_s, 6),
        "share": round(other / total, 3) if total else None,
    }
    return {
        "mode": mode,
        "streams": streams,
        "keywords": keywords,
        "audio_s_per_stream": len(audio) / SAMPLE_RATE,
        "cpu_s": round(total, 3),
        "rtf_per_stream": round(total / stream_s, 6),
        "options": None if options is None else options.describe(),
        "components": rows,
    }


def sweep_embedding(model: Path, rows: int, reps: int) -> list[dict[str, Any]]:
    """One call of ``rows`` rows against ``rows`` calls of one row, per session-option set.

    Process CPU time counts every onnxruntime thread (thread CPU would miss the pool's workers)."""
    path = model / "speech_embedding.onnx"
    x1 = np.random.default_rng(0).standard_normal((1, 76, 32, 1)).astype(np.float32)
    xb = np.repeat(x1, rows, axis=0)
    out = []
    for opts in (
        OrtOptions(),
        OrtOptions(threads=2),
        OrtOptions(threads=2, spinning=False),
        OrtOptions(arena=False),
        OrtOptions(optimization="basic"),
    ):
        sess = ort.InferenceSession(str(path), session_options(opts), providers=["CPUExecutionProvider"])
        for _ in range(3):
            sess.run(None, {"input_1": x1})
            sess.run(None, {"input_1": xb})
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            for _ in range(rows):
                sess.run(None, {"input_1": x1})
        c_one, w_one = (time.process_time() - c0) / reps, (time.perf_counter() - w0) / reps
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            sess.run(None, {"input_1": xb})
        c_b, w_b = (time.process_time() - c0) / reps, (time.perf_counter() - w0) / reps
        out.append(
            {
                "options": opts.describe(),
                "rows": rows,
                "one_row_calls_cpu_ms": round(1000 * c_one, 2),
                "one_row_calls_wall_ms": round(1000 * w_one, 2),
                "batched_call_cpu_ms": round(1000 * c_b, 2),
                "batched_call_wall_ms": round(1000 * w_b, 2),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_frontend")
    ap.add_argument("--model", default="src/openkws/models/default")
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--keywords", type=int, default=100)
    ap.add_argument("--mode", choices=("single", "batched", "both"), default="both")
    ap.add_argument("--sweep-embedding", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    model = Path(a.model)
    audio = speech_audio(a.seconds)
    doc: dict[str, Any] = {
        "model": str(model),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    for mode in ("single", "batched") if a.mode == "both" else (a.mode,):
        doc["runs"].append(profile(model, audio, a.streams, a.keywords, mode))
    if a.sweep_embedding:
        doc["embedding_sweep"] = sweep_embedding(model, a.streams, 5)
    text = json.dumps(doc, indent=2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak (bounded, loopback only): a real server under steady streaming and keyword churn.

    python -m bench.soak --minutes 10                 # the benchmark run (JSON in bench/out/soak.json)
    python -m bench.soak --minutes 0.6 --clients 3    # what the CI test runs

A server subprocess (``openkws serve``, auth on, 127.0.0.1) serves two tenants:

* ``--clients`` websocket clients (tenant ``soak``, stream keys) each stream the same synthesized
  speech clip with keywords in it, paced in real time in 100 ms frames (chunk ``i`` is sent when its
  audio would have been recorded), then ``stop``, then a new stream, until the time is up. The
  clients authenticate by header, subprotocol and ``?token=`` in turn.
* ``--churners`` clients (admin keys; half in tenant ``soak``, half in ``churn``) enroll a random
  phrase, change its threshold and delete it, over and over.

Figures:

* **errors**: any stream that does not end with ``summary`` + close 1000, any ``error`` message,
  any failed enrollment/patch/delete (target 0).
* **detections lost**: the reference is ``POST /v1/detect`` of the same clip (the offline path) at the
  start; a reference event (keyword id, start within 100 ms) missing from a stream's events is lost
  (target 0). Streams match the clip's keywords only (``keywords`` subset), so the churn in their
  tenant must not change them. Events not in the reference are counted as ``spurious``.
* **latency**: detection message arrival minus the wall time at which the keyword's audio ended
  (``end_ms``) and at which the deciding audio was sent (``decided_ms``); p50/p95/max.
* **RSS growth** of the server from the end of the warm-up (every client has finished one stream)
  to the end (target < 5%: no per-stream leak).

The clients and the figures they gather live in :mod:`bench.soak_clients`; this module makes the
clip and its reference, runs the server and the clients, and writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from bench._server import ServerProcess
from bench.service_bench import model_dir
from bench.soak_clients import Stats, churner, sample_rss, streamer
from bench.speech_audio import synth
from bench.stream_client import pct
from openkws.constants import SAMPLE_RATE
from openkws.engine.spotter import Spotter
from openkws.keywords.store import KeywordStore
from openkws.server.auth import ApiKeys

OUT = Path("bench/out")
CLIP_PARTS = [
    ("hey jarvis", "espeak:en-us+m3"),
    ("what is the weather like today", "espeak:en-gb+f2"),
    ("turn on the lights", "espeak:en-us+f3"),
    ("play music", "espeak:en-gb+m3"),
    ("okay computer", "espeak:en-us+m3"),
]
CLIP_KEYWORDS = ["hey jarvis", "turn on the lights", "play music", "okay computer", "stop"]


def log(msg: str) -> None:
    print(msg, flush=True)


# -- inputs -------------------------------------------------------------------------------------------
def clip_audio() -> np.ndarray:
    gap = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
    parts = [gap]
    for text, voice in CLIP_PARTS:
        parts += [synth(text, voice), gap]
    return np.concatenate(parts)


def pcm16(audio: np.ndarray) -> bytes:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2").tobytes()


def wav_bytes(pcm: bytes) -> bytes:
    b = io.BytesIO()
    sf.write(b, np.frombuffer(pcm, "<i2"), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return b.getvalue()


def gap_threshold(model: Path, audio: np.ndarray, texts: list[str], quantile: float = 0.95) -> float:
    """For an untrained model: a threshold near the ``quantile`` of the best per-frame scores, placed
    in a gap between observed scores (so float noise between batch sizes cannot flip a decision)."""
    sp = Spotter.load(model, device="cpu")
    prons = [sp.pronounce(t) for t in texts]
    sp.index.replace_all(
        sp.entries_from([(i + 1, "default", p.text, p.phonemes, 1.0) for i, p in enumerate(prons)])
    )
    s = sp.create_stream(trace=True)
    s.accept_waveform(audio)
    s.input_finished()
    sp.decode(s)
    assert s.trace is not None
    scores = np.sort(np.array([p.score for p in s.trace]))
    i = int(quantile * len(scores))
    gaps = np.diff(scores)
    for j in sorted(range(max(1, i - 20), min(len(scores) - 1, i + 20)), key=lambda j: abs(j - i)):
        if gaps[j - 1] > 5e-4:
            return float(np.clip((scores[j - 1] + scores[j]) / 2, 0.0, 1.0))
    return float(np.clip(scores[i] + 1e-4, 0.0, 1.0))


def trained(model: Path) -> bool:
    spec = json.loads((model / "model.json").read_text())
    return not str(spec.get("model_version", "")).startswith("untrained")


# -- the run ------------------------------------------------------------------------------------------
def run_soak(
    model: Path,
    minutes: float,
    clients: int = 8,
    churners: int = 2,
    churn_rate_per_s: float = 2.0,
    workdir: Path | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Run the soak; returns the figures (see the module docstring)."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="openkws-soak-"))
    data_dir = tmp / "data"
    keys = ApiKeys(KeywordStore(f"sqlite:///{data_dir / 'keywords.db'}"))
    admin = keys.create("soak", "admin", "soak admin").token
    stream_key = keys.create("soak", "stream", "soak streams").token
    churn_keys = [
        keys.create("soak" if i % 2 == 0 else "churn", "admin", f"churn {i}").token for i in range(churners)
    ]

    audio = clip_audio()
    pcm = pcm16(audio)
    if threshold is None:
        threshold = None if trained(model) else gap_threshold(model, audio, CLIP_KEYWORDS)
    server = ServerProcess(
        model,
        data_dir,
        tmp / "server.log",
        env={
            "OPENKWS_AUTH": "on",
            "OPENKWS_MAX_STREAMS_PER_KEY": str(clients + 2),
            "OPENKWS_IDLE_TIMEOUT_S": "60",
        },
    )
    server.start()
    startup_s = server.wait_ready()
    log(
        f"server ready in {startup_s:.1f} s (pid {server.pid}); clip {len(audio) / SAMPLE_RATE:.1f} s, "
        f"threshold {threshold}"
    )
    with httpx.Client(base_url=server.url, timeout=60) as c:
        body = {
            "keywords": [
                {"text": t} if threshold is None else {"text": t, "threshold": threshold}
                for t in CLIP_KEYWORDS
            ]
        }
        r = c.post("/v1/keywords/batch", json=body, headers={"Authorization": f"Bearer {admin}"})
        r.raise_for_status()
        ids = [k["id"] for k in r.json()["keywords"]]
        r = c.post(
            "/v1/detect",
            files={"file": ("clip.wav", wav_bytes(pcm), "audio/wav")},
            params={"keywords": ids},
            headers={"Authorization": f"Bearer {stream_key}"},
        )
        r.raise_for_status()
        reference = [(int(d["keyword_id"]), float(d["start_ms"])) for d in r.json()["detections"]]
    log(f"reference (offline /v1/detect): {len(reference)} detections per clip")

    stats = Stats(clients=clients)
    cpu0 = server.cpu_seconds()
    t_start = time.monotonic()
    until = t_start + 60.0 * minutes

    async def main() -> None:
        tasks = [
            streamer(i, server.url, stream_key, pcm, ids, reference, stats, until, server)
            for i in range(clients)
        ]
        tasks += [churner(i, server.url, k, stats, until, churn_rate_per_s) for i, k in enumerate(churn_keys)]
        tasks.append(sample_rss(server, stats, until))
        await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
        elapsed = time.monotonic() - t_start
        cpu = server.cpu_seconds() - cpu0
        end_rss = server.rss_bytes()
        rc = server.terminate()
    finally:
        server.kill9()
    base = stats.warm_rss or (stats.rss[0][1] if stats.rss else end_rss)
    res = {
        "minutes": minutes,
        "elapsed_s": round(elapsed, 1),
        "clients": clients,
        "churners": churners,
        "clip_s": round(len(audio) / SAMPLE_RATE, 2),
        "threshold": threshold,
        "model": str(model),
        "server_startup_s": round(startup_s, 2),
        "server_exit_code": rc,
        "streams_completed": stats.streams,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "detections_expected": stats.expected,
        "detections_received": stats.received,
        "detections_lost": stats.lost,
        "detections_spurious": stats.spurious,
        "latency_ms": {
            "p50": pct(stats.latency_ms, 50),
            "p95": pct(stats.latency_ms, 95),
            "max": pct(stats.latency_ms, 100),
        },
        "decision_latency_ms": {
            "p50": pct(stats.decision_latency_ms, 50),
            "p95": pct(stats.decision_latency_ms, 95),
            "max": pct(stats.decision_latency_ms, 100),
        },
        "churn_ops": stats.churn_ops,
        "enroll_latency_ms": {"p50": pct(stats.churn_latency_ms, 50), "p95": pct(stats.churn_latency_ms, 95)},
        "rss_mb": {
            "warm": round(base / 2**20, 1),
            "end": round(end_rss / 2**20, 1),
            "max": round(max((r for _, r in stats.rss), default=end_rss) / 2**20, 1),
            # the shape: a plateau (working memory reaching its peak batch) or a steady climb (a leak)
            "per_minute": per_minute(stats.rss),
        },
        "rss_growth_pct": round(100.0 * (end_rss - base) / base, 2) if base else None,
        "rss_growth_second_half_pct": half_growth(stats.rss, end_rss),
        "server_cpu_s_per_audio_s": round(cpu / max(1e-9, elapsed * clients), 4),
    }
    return res


def per_minute(samples: list[tuple[float, int]]) -> list[float]:
    """RSS (MB) at the first sample of each minute."""
    out: dict[int, int] = {}
    for t, rss in samples:
        out.setdefault(int(t // 60), rss)
    return [round(v / 2**20, 1) for _, v in sorted(out.items())]


def half_growth(samples: list[tuple[float, int]], end_rss: int) -> float | None:
    """RSS growth (%) from the middle of the run to its end."""
    if not samples:
        return None
    mid = samples[len(samples) // 2][1]
    return round(100.0 * (end_rss - mid) / mid, 2) if mid else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8, help="concurrent real-time websocket streams")
    p.add_argument(
        "--churners", type=int, default=2, help="clients enrolling, patching and deleting keywords"
    )
    p.add_argument(
        "--churn-rate", type=float, default=2.0, help="enroll+patch+delete rounds per second per churner"
    )
    p.add_argument(
        "--model", default=None, help="model directory (default: models/default, else an untrained stand-in)"
    )
    p.add_argument("--out", default=str(OUT / "soak.json"))
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    model, _ = model_dir(a.model, OUT / "cache")
    res = run_soak(model, a.minutes, a.clients, a.churners, a.churn_rate)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    log(json.dumps({k: v for k, v in res.items() if k != "error_samples"}, indent=2))
    ok = res["errors"] == 0 and res["detections_lost"] == 0
    log(
        f"soak {'OK' if ok else 'FAILED'}: {res['errors']} errors, {res['detections_lost']} of "
        f"{res['detections_expected']} detections lost, p95 latency {res['latency_ms']['p95']} ms, "
        f"RSS growth {res['rss_growth_pct']}% -> {a.out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

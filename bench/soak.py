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
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from bench._server import AuthHow, ServerProcess, frames_of, open_stream, send_paced
from bench.service_bench import model_dir
from bench.speech_audio import synth
from bench.stream_client import pct
from openkws.constants import SAMPLE_RATE
from openkws.engine.spotter import Spotter
from openkws.keywords.store import KeywordStore
from openkws.server.auth import ApiKeys

OUT = Path("bench/out")
CHUNK_MS = 100
MATCH_TOLERANCE_MS = 100.0
CLIP_PARTS = [
    ("hey jarvis", "espeak:en-us+m3"),
    ("what is the weather like today", "espeak:en-gb+f2"),
    ("turn on the lights", "espeak:en-us+f3"),
    ("play music", "espeak:en-gb+m3"),
    ("okay computer", "espeak:en-us+m3"),
]
CLIP_KEYWORDS = ["hey jarvis", "turn on the lights", "play music", "okay computer", "stop"]
CHURN_WORDS = (
    "alpha",
    "bravo",
    "delta",
    "echo",
    "golf",
    "hotel",
    "india",
    "kilo",
    "lima",
    "mike",
    "oscar",
    "papa",
    "romeo",
    "sierra",
    "tango",
    "victor",
    "whiskey",
    "yankee",
    "zulu",
    "orange",
    "purple",
    "silver",
    "window",
    "garden",
    "river",
    "mountain",
    "pencil",
    "rocket",
    "camera",
    "doctor",
)


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


# -- clients ------------------------------------------------------------------------------------------
@dataclass
class Stats:
    streams: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    spurious: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    decision_latency_ms: list[float] = field(default_factory=list)
    churn_ops: int = 0
    churn_latency_ms: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    clients: int = 0
    warm: set[int] = field(default_factory=set)  # clients that finished their first stream
    warm_rss: int | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what[:300])


def match(reference: list[tuple[int, float]], got: list[tuple[int, float]]) -> tuple[int, int]:
    """(lost, spurious): reference events without a streamed event of the same keyword starting
    within MATCH_TOLERANCE_MS, and streamed events left over."""
    left = list(got)
    lost = 0
    for kid, start in reference:
        hit = next((g for g in left if g[0] == kid and abs(g[1] - start) <= MATCH_TOLERANCE_MS), None)
        if hit is None:
            lost += 1
        else:
            left.remove(hit)
    return lost, len(left)


async def stream_once(
    url: str,
    token: str,
    how: AuthHow,
    pcm: bytes,
    ids: list[int],
    reference: list[tuple[int, float]],
    stats: Stats,
) -> None:
    events: list[tuple[int, float]] = []
    summary: dict[str, Any] | None = None
    async with open_stream(url, token=token, how=how, keywords=ids) as (ws, ready):
        if ready.get("type") != "ready":
            stats.error(f"start refused: {ready}")
            return
        t0 = time.perf_counter()
        sender = asyncio.create_task(
            send_paced(ws, frames_of(pcm, CHUNK_MS), CHUNK_MS / 1000, t0, first_at=CHUNK_MS / 1000)
        )
        try:
            async for raw in ws:
                now = time.perf_counter()
                m = json.loads(raw)
                if m["type"] == "detection":
                    events.append((int(m["keyword_id"]), float(m["start_ms"])))
                    stats.latency_ms.append(1000 * (now - t0) - m["end_ms"])
                    stats.decision_latency_ms.append(1000 * (now - t0) - m["decided_ms"])
                elif m["type"] == "summary":
                    summary = m
                elif m["type"] == "error":
                    stats.error(f"stream error: {m}")
        finally:
            sender.cancel()
        code = ws.close_code
    if summary is None or code != 1000:
        stats.error(f"stream ended without summary + 1000 (close {code}, summary {summary is not None})")
        return
    lost, spurious = match(reference, events)
    stats.streams += 1
    stats.expected += len(reference)
    stats.received += len(events)
    stats.lost += lost
    stats.spurious += spurious


async def streamer(
    n: int,
    url: str,
    token: str,
    pcm: bytes,
    ids: list[int],
    reference: list[tuple[int, float]],
    stats: Stats,
    until: float,
    server: ServerProcess,
) -> None:
    hows: tuple[AuthHow, ...] = ("header", "subprotocol", "query")
    k = 0
    await asyncio.sleep(0.37 * n)  # stagger the clients
    while time.monotonic() < until:
        try:
            await stream_once(url, token, hows[(n + k) % 3], pcm, ids, reference, stats)
        except Exception as e:  # any transport failure is an error of the run
            stats.error(f"client {n}: {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
        k += 1
        if n not in stats.warm:
            stats.warm.add(n)
            if stats.warm_rss is None and len(stats.warm) == stats.clients:
                stats.warm_rss = server.rss_bytes()


async def churner(n: int, url: str, token: str, stats: Stats, until: float, rate_per_s: float) -> None:
    rng = random.Random(1000 + n)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        while time.monotonic() < until:
            text = " ".join(rng.sample(CHURN_WORDS, rng.randint(1, 3)))
            try:
                t = time.perf_counter()
                r = await c.post("/v1/keywords", json={"text": text, "threshold": 0.99})
                stats.churn_latency_ms.append(1000 * (time.perf_counter() - t))
                if r.status_code not in (200, 201):
                    stats.error(f"enroll {r.status_code}: {r.text[:200]}")
                    continue
                kid = r.json()["id"]
                r = await c.patch(f"/v1/keywords/{kid}", json={"threshold": 0.98})
                if r.status_code != 200:
                    stats.error(f"patch {r.status_code}: {r.text[:200]}")
                r = await c.delete(f"/v1/keywords/{kid}")
                if r.status_code not in (204, 404):  # 404: another churner of the tenant deleted it first
                    stats.error(f"delete {r.status_code}: {r.text[:200]}")
                stats.churn_ops += 3
            except httpx.HTTPError as e:
                stats.error(f"churn: {type(e).__name__}: {e}")
            await asyncio.sleep(1.0 / rate_per_s)


async def sample_rss(server: ServerProcess, stats: Stats, until: float, every_s: float = 2.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() < until:
        stats.rss.append((time.monotonic() - t0, server.rss_bytes()))
        await asyncio.sleep(every_s)


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

"""Per-replica capacity figures for docs/DEPLOY.md ("Scaling out"), measured on loopback:

    python -m tests.deploy.capacity [--keywords 10000] [--streams 32] [--seconds 10]

Two replicas on one PostgreSQL registry. Through replica 0 one tenant enrolls ``--keywords``
keywords in batches of 1000; replica 1's index follows through the change feed (time per batch
until replica 1 holds it, and replica 1's resident memory before/after: index memory per keyword).
Then ``--streams`` websocket streams send speech paced in real time to replica 1 for ``--seconds``:
its CPU seconds per stream-second (so streams per core) and resident memory per open stream.
Prints one JSON object. Figures depend on the machine and its load: report both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.deploy.cluster import Replica, Stream, pcm16, replica_env, silence, wait_until
from tests.deploy.conftest import DEFAULT_MODEL, speech_wav
from tests.deploy.postgres import free_port, postgres_server

NATO = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def texts(n: int) -> list[str]:
    return [" ".join(t) for t in itertools.islice(itertools.product(NATO, NATO, NATO), n)]


def measure(n_keywords: int, n_streams: int, seconds: float) -> dict[str, object]:
    out: dict[str, object] = {
        "keywords": n_keywords,
        "streams": n_streams,
        "seconds": seconds,
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as url:
        from openkws.keywords.store import KeywordStore
        from openkws.server.auth import ApiKeys
        from openkws.settings import Settings

        store = KeywordStore(Settings(database_url=url).resolved_database_url())
        token = ApiKeys(store).create("big", "admin").token
        store.close()
        reps = []
        for i in range(2):
            d = Path(tmp) / f"r{i}"
            d.mkdir()
            port = free_port()
            env = replica_env(port, url, d, DEFAULT_MODEL, 30.0)
            env["OPENKWS_MAX_STREAMS"] = str(max(64, n_streams + 4))
            env["OPENKWS_INFERENCE_WORKERS"] = "2"
            reps.append(Replica(f"r{i}", port, d / "serve.log", env))
        try:
            for r in reps:
                r.start()
            for r in reps:
                r.wait_ready()
            a, b = reps
            out["rss_mb_idle"] = round(b.metrics()["process_resident_memory_bytes"] / 2**20, 1)
            h = httpx.Client(base_url=a.url, timeout=600, headers={"Authorization": f"Bearer {token}"})
            all_texts, per_batch, follow = texts(n_keywords), [], []
            for off in range(0, n_keywords, 1000):
                chunk = all_texts[off : off + 1000]
                t0 = time.monotonic()
                r = h.post("/v1/keywords/batch", json={"keywords": [{"text": t} for t in chunk]})
                t_ack = time.monotonic()
                assert r.status_code == 200, r.text
                want = off + len(chunk)
                took = wait_until(lambda w=want: b.metrics().get("openkws_enrolled_keywords") == w, 120, 0.01)
                assert took is not None
                per_batch.append(round(t_ack - t0, 3))
                follow.append(round(took, 3))
            out["enroll_batch_1000_s"] = per_batch
            out["other_replica_applies_batch_1000_s"] = follow
            time.sleep(1)
            m = b.metrics()
            out["rss_mb_with_keywords"] = round(m["process_resident_memory_bytes"] / 2**20, 1)
            # Streams: speech paced in real time, looped.
            wav = speech_wav(Path(tmp) / "jarvis.wav", lead_s=0.5, tail_s=1.0)
            h.post("/v1/keywords", json={"text": "hey jarvis"})
            clip = pcm16(wav) + silence(1.0)
            streams = [Stream(b.url, token) for _ in range(n_streams)]
            time.sleep(0.5)
            m0 = b.metrics()
            t0 = time.monotonic()

            def feed(s: Stream) -> None:
                audio = clip * (int(seconds / (len(clip) / 32_000)) + 1)
                s.send(audio[: int(seconds * 32_000) // 2 * 2], realtime=1.0)

            threads = [threading.Thread(target=feed, args=(s,)) for s in streams]
            for t in threads:
                t.start()
            time.sleep(seconds / 2)
            mid = b.metrics()
            for t in threads:
                t.join()
            sent = time.monotonic() - t0
            summaries = [s.finish() for s in streams]  # every stream's audio processed
            assert all(summaries), "a stream ended without its summary"
            m1 = b.metrics()
            wall = time.monotonic() - t0
            out["backlog_after_last_audio_s"] = round(wall - sent, 2)
            cpu = m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]
            audio_s = n_streams * seconds
            out["stream_cpu_s_per_audio_s"] = round(cpu / audio_s, 4)
            out["streams_per_core"] = round(audio_s / cpu, 1)  # real-time streams one core's CPU time covers
            out["rss_mb_per_stream"] = round(
                (mid["process_resident_memory_bytes"] - m0["process_resident_memory_bytes"])
                / 2**20
                / n_streams,
                2,
            )
            out["detections"] = sum(len(s.detections()) for s in streams)
            for s in streams:
                s.close()
            h.close()
        finally:
            for r in reps:
                r.stop()
    out["load_after"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keywords", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(json.dumps(measure(args.keywords, args.streams, args.seconds), indent=2))


if __name__ == "__main__":
    main()

"""Keyword-scoring throughput: window embeddings scored against K enrolled keywords, on the index
backend the service would use (FAISS GPU top-k when ``--device cuda`` finds a GPU, else the CPU
path: one BLAS product and a threshold mask). Not a test; prints JSON.

    python -m bench.index_throughput --keywords 10000,100000 --queries 4096 --device cuda

``windows_per_s`` is how many window embeddings (5 per stream per 80 ms frame) one process scores per
second; ``streams_equivalent`` divides it by the 62.5 windows a stream produces per second.
Proxies are random unit vectors: the cost of a flat index does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

WINDOWS_PER_STREAM_S = 5 * 1000 / 80  # window lengths x evaluated frames per second
DIM = 256


def measure(keywords: int, queries: int, device: str, reps: int = 5, top_k: int = 16) -> dict[str, Any]:
    from openkws.engine.index import KeywordEntry, KeywordIndex, l2_normalize

    rng = np.random.default_rng(0)
    proxies = l2_normalize(rng.standard_normal((keywords, DIM)).astype(np.float32))
    index = KeywordIndex(DIM, prefer_gpu=device != "cpu")
    index.replace_all(
        [KeywordEntry(i + 1, "default", f"k{i}", ("K",), 0.65, proxies[i]) for i in range(keywords)]
    )
    t = index.tenant("default")
    q = l2_normalize(rng.standard_normal((queries, DIM)).astype(np.float32))

    def once() -> None:
        if t.backend == "gpu":
            t.search(q, top_k)
        else:  # the spotter's CPU path: exact scores, threshold mask (chunks of 256 windows)
            for c in range(0, len(q), 256):
                sims = q[c : c + 256] @ t.proxies.T
                np.nonzero(sims >= t.thresholds[None, :])

    once()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        once()
    wall, cpu = (time.perf_counter() - w0) / reps, (time.process_time() - c0) / reps
    wps = queries / wall
    return {
        "keywords": keywords,
        "backend": t.backend,
        "queries": queries,
        "wall_ms": round(1000 * wall, 2),
        "cpu_ms": round(1000 * cpu, 2),
        "windows_per_s": round(wps),
        "keyword_scores_per_s": round(wps * keywords),
        "streams_equivalent": round(wps / WINDOWS_PER_STREAM_S),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.index_throughput")
    ap.add_argument("--keywords", default="10000,100000")
    ap.add_argument("--queries", type=int, default=4096)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    for k in (int(x) for x in a.keywords.split(",")):
        print(json.dumps(measure(k, a.queries, a.device, a.reps)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

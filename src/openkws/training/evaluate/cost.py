"""Model cost per acoustic frame and per pooled window, measured through the serving engine's encoders."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import numpy as np

from openkws.constants import SAMPLE_RATE
from openkws.engine.spotter import Spotter


class ModelCost(TypedDict):
    """What :func:`measure_cost` reports (``openkws eval cost``)."""

    frontend: str
    frames_bulk_ms_per_frame: float
    frames_stream_ms_per_frame: float
    pool_ms_per_window: float
    feature_frames_per_second: float
    acoustic_core_fraction_per_stream: float


def measure_cost(model_dir: Path, frames: int = 256, repeats: int = 20, streams: int = 64) -> ModelCost:
    """Milliseconds (CPU time) per acoustic frame / per pooled window: the service's encoders, 1 thread.

    * ``frames_bulk_ms_per_frame``: one call over ``frames`` feature frames (offline).
    * ``frames_stream_ms_per_frame``: one detector step for ``streams`` streams micro-batched: input
      ``[streams, context + stride, F]`` -> ``stride`` new frames per stream (the graph is stateless,
      so each call recomputes the context frames' intermediate activations).
    * ``pool_ms_per_window``: mean over window lengths, each pooled for ``streams`` streams in one batch
      (a batch per length, as a micro-batching service would group them).
    """
    encoders = Spotter.load(Path(model_dir), device="cpu", threads=1).encoders
    spec = encoders.spec
    rng = np.random.default_rng(0)
    ctx = spec.acoustic_context_frames

    def timed(fn: Callable[[], object], n: int) -> float:
        """Best of 5 rounds of ``n`` calls, in process CPU time: the encoders run on this one thread,
        so CPU time is the model's cost even when other jobs share the cores (wall time is not)."""
        fn()
        best = float("inf")
        for _ in range(5):
            t = time.process_time()
            for _ in range(n):
                fn()
            best = min(best, (time.process_time() - t) / n)
        return best

    x = rng.normal(size=(frames + ctx, spec.feature_dim)).astype(np.float32)
    bulk = timed(lambda: encoders.acoustic_frames([x]), repeats) / frames
    hop_frames = spec.window_stride_frames  # a stream feeds this many new frames per detector step
    xs = rng.normal(size=(streams, ctx + hop_frames, spec.feature_dim)).astype(np.float32)
    stream = timed(lambda: encoders.acoustic_frames(list(xs)), repeats) / (streams * hop_frames)
    windows = spec.windows_frames
    pool_per_step = 0.0  # one detector step of one stream: every window length once
    for w in windows:
        fb = rng.normal(size=(streams, w - ctx, spec.frame_dim)).astype(np.float32)
        mask = np.ones((streams, w - ctx), np.float32)
        pool_per_step += (
            timed(lambda fb=fb, mask=mask: encoders.pool(fb, mask), max(3, repeats // 4)) / streams
        )
    pool = pool_per_step / len(windows)
    fps = SAMPLE_RATE / spec.feature_hop_samples
    return {
        "frontend": spec.frontend,
        "frames_bulk_ms_per_frame": 1e3 * bulk,
        "frames_stream_ms_per_frame": 1e3 * stream,
        "pool_ms_per_window": 1e3 * pool,
        "feature_frames_per_second": fps,
        "acoustic_core_fraction_per_stream": fps * stream
        + fps / spec.window_stride_frames * len(windows) * pool,
    }

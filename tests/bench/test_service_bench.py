"""``bench.service_bench``'s stream level against a real server: streams refused by admission control
(close 1013) are counted, not a crash, and the figures are over the admitted streams only."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np

from bench._server import ServerProcess, free_port
from bench.service_bench import run_levels
from bench.stream_client import stream_level
from openkws.constants import SAMPLE_RATE

STREAMS = 8  # enough that some refusals' close frames overtake the client's `start` (the old crash)


def noise_pcm(seconds: float) -> bytes:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 300).astype("<i2").tobytes()


def test_streams_over_the_limit_are_refused_and_counted(untrained_model: Path, tmp_path: Path) -> None:
    server = ServerProcess(
        untrained_model, tmp_path / "data", tmp_path / "server.log", env={"OPENKWS_MAX_STREAMS": "1"}
    )
    server.start()
    try:
        server.wait_ready(timeout=600)  # slow starts on a loaded machine
        # 2 s streams that all start within one 100 ms frame: the first holds the only slot throughout
        rows = run_levels(server, noise_pcm(4.0), [STREAMS], 2.0)
    finally:
        server.terminate(timeout=60, sig=signal.SIGINT)
    (row,) = rows
    assert (row["streams"], row["admitted"], row["refused"]) == (STREAMS, 1, STREAMS - 1), row
    assert row["errors"] == 0, row  # a refusal is not an error
    assert row["server_cpu_rtf_per_stream"] is not None  # per admitted stream
    assert row["pass"] is False  # not every stream was admitted


def test_a_failed_connection_is_an_error_not_a_refusal() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    res = asyncio.run(stream_level(url, noise_pcm(1.0), 2, 0.5))
    assert [r["refused"] for r in res] == [False, False]
    assert all(r["errors"][0].startswith(("ConnectionRefusedError", "OSError")) for r in res), res

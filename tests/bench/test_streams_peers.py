"""Peers glue of `openkws eval streams`: nesting per-threshold detections into scored events."""

from __future__ import annotations

import numpy as np
import pytest

from bench.streams_peers import nest


def test_nest_scores_each_detection_with_its_strictest_threshold() -> None:
    ev = nest(
        [
            (0.1, {"k": np.array([1.0, 5.0]), "j": np.array([3.0])}),
            (0.2, {"k": np.array([1.2]), "j": np.zeros(0)}),
            (0.3, {"k": np.array([0.9])}),
        ]
    )
    got = sorted((e.keyword, e.end_s, e.score) for e in ev)
    assert got == [("j", 3.0, 0.1), ("k", 0.9, 0.3), ("k", 5.0, 0.1)]
    # counts at each threshold are preserved: 3 events at 0.1, 1 at 0.2 and 0.3
    assert [sum(e.score >= t for e in ev) for t in (0.1, 0.2, 0.3)] == [3, 1, 1]
    assert all(e.start_s == e.end_s for e in ev)  # time-only events


def test_unknown_peer_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.streams_peers import make_runner

    with pytest.raises(ValueError, match="pocketsphinx or efficientword"):
        make_runner("porcupine", ["a"], tmp_path)


def test_the_benchmark_names_its_peers(capsys: pytest.CaptureFixture[str]) -> None:
    """Peers are chosen in the benchmark (it calls ``run_streams(peers=...)``), not in the package."""
    from bench.streams_peers import main

    with pytest.raises(SystemExit):
        main(["--peer", "porcupine"])
    assert "pocketsphinx" in capsys.readouterr().err

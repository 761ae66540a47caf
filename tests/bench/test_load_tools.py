"""The pure parts of ``bench.load`` (profile categories, tables) and ``bench.fast_path`` (the int8 rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fast_path import compare
from bench.load import main, markdown
from bench.load_cpu import categorize, profile_table


def test_profile_categories_from_collapsed_stacks(tmp_path: Path) -> None:
    ort = "MainThread;run (onnxruntime/capi/onnxruntime_inference_collection.py:220)"
    decide = "t;_step (openkws/engine/spotter.py:150);decide (openkws/engine/stream.py:290)"
    loop = "MainThread;run_forever (asyncio/base_events.py:607);_run_once (asyncio/base_events.py:1900)"
    ws = "MainThread;receive (uvicorn/protocols/websockets/websockets_sansio_impl.py:300)"
    assert categorize(ort).startswith("onnxruntime")
    assert categorize(decide).startswith("decision layer")
    assert categorize(loop) == "asyncio event loop"
    assert categorize(ws).startswith("websocket")
    assert categorize("t;something_else (x.py:1)") == "other"
    (tmp_path / "active.txt").write_text(f"{ort} 30\n{decide} 10\n{ws} 10\nnot a sample line\n")
    (tmp_path / "gil.txt").write_text(f"{decide} 10\n{ws} 10\n")
    p = profile_table(tmp_path)
    assert p["active_samples"] == 50 and p["gil_samples"] == 20
    by = {r["category"]: r for r in p["rows"]}
    assert by["onnxruntime (GIL released)"] == {
        "category": "onnxruntime (GIL released)",
        "active_samples": 30,
        "gil_samples": 0,
    }


def test_markdown_table_has_a_row_per_level() -> None:
    row = {
        "streams": 32, "admitted": 30, "refused": 2, "keywords_detected": 80, "keywords_spoken": 90,
        "p50_ms": 300.0, "p95_ms": 450.0, "server_cores": 1.5, "client_cores": 0.2, "other_cores": 0.1,
        "server_cpu_per_stream_s": 0.012, "backlog_ms_max": 210.0, "load_before": [1.0, 1.0, 1.0],
        "load_after": [1.5, 1.1, 1.0],
    }  # fmt: skip
    table = markdown({"levels": [row]})
    assert table.count("\n") == 3 and "| 32 | 30 | 2 | 80/90 | 300.0 ms | 450.0 ms |" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--levels", "0,5"], "--levels needs positive integers"),
        (["--seconds", "0"], "--seconds must be > 0"),
        (["--model", "/nonexistent"], "no model.json in /nonexistent"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_int8_rule_is_one_point_per_proxy_kind() -> None:
    rows, ok = compare({"text": 0.70, "tts": 0.60}, {"text": 0.71, "tts": 0.605})
    assert ok and [r["worse_points"] for r in rows] == [1.0, 0.5]
    assert compare({"text": 0.70}, {"text": 0.7101})[1] is False
    assert compare({"text": 0.70}, {})[1] is False  # nothing compared: no decision for int8

"""bench/perf_doc.py: the perf section is rendered from the suite's JSON, replaced in place on a rerun,
and kept when bench/report.py rewrites the rest of the page."""

from __future__ import annotations

import copy
from pathlib import Path

from bench.page_sections import keep_section
from bench.perf_doc import BEGIN, END, render, update_doc

DOC = {
    "machine": {"cpus": 2, "gpu_lent": False},
    "scaling": {
        "load_average_before": [9.0, 8.0, 7.0],
        "result": {
            "int8": {
                "cpu_s_per_audio_s_10": 0.0106,
                "cpu_s_per_audio_s_10000": 0.0142,
                "ratio_10000_vs_10": 1.339,
            }
        },
    },
    "gating": {
        "load_average_before": [9.0, 8.0, 7.0],
        "result": {
            "rows": [
                {
                    "speech_fraction": 0.25,
                    "vad": "on",
                    "rtf_per_stream": 0.0073,
                    "fed_fraction": 0.58,
                    "detections": 50,
                    "keywords_spoken": 96,
                    "keywords_detected": 90,
                    "other_events": 10,
                }
            ]
        },
    },
}


def test_render_states_no_gpu_and_misses() -> None:
    text = render(DOC)
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert "no GPU machine was lent" in text
    assert "| cost 10,000 / 10 keywords <= 1.1 (int8) | 1.339 | missed |" in text
    assert "| 25% | on | 0.00730 | 58% | 90/96 | 10 |" in text
    assert "load average 9.0/8.0/7.0 on 2 cores" in text


def test_update_replaces_the_section_only(tmp_path: Path) -> None:
    page = tmp_path / "B.md"
    page.write_text("# Benchmarks\n\nintro\n")
    update_doc(page, DOC)
    first = page.read_text()
    assert first.startswith("# Benchmarks\n\nintro\n") and first.count(BEGIN) == 1
    doc = copy.deepcopy(DOC)
    doc["scaling"]["result"]["int8"]["ratio_10000_vs_10"] = 1.05
    update_doc(page, doc)
    second = page.read_text()
    assert second.count(BEGIN) == 1 and "| 1.050 | met |" in second and "1.339" not in second


def test_report_rewrite_keeps_the_section() -> None:
    old = f"# B\n\nold\n\n{BEGIN}\nperf\n{END}\n"
    assert keep_section("# B\n\nnew\n", old) == f"# B\n\nnew\n\n{BEGIN}\nperf\n{END}\n"
    assert keep_section("# B\n\nnew\n", "# B\n") == "# B\n\nnew\n"
    streams = "<!-- eval-streams:begin -->\ns\n<!-- eval-streams:end -->"
    ablation = "<!-- robust-ablation:begin -->\na\n<!-- robust-ablation:end -->"
    both = keep_section("# B\n", f"# B\n{streams}\nx\n{ablation}\n")
    assert both == f"# B\n\n{streams}\n\n{ablation}\n"  # every generated section survives a rewrite

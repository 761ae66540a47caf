"""docs/BENCHMARKS.md shows numbers only from a publishable run; targets are judged from the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.report import write_report
from bench.report_view import NOT_MEASURED, publishable
from bench.streaming import DetCurve, summarize


def _curve(frr_points: list[float], fa_points: list[int]) -> DetCurve:
    # one keyword, 100 occurrences, 1 hour: hits/fas per sweep point
    hits = np.array([[round(100 * (1 - f)) for f in frr_points]])
    return DetCurve(
        ["kw"], np.linspace(0, 1, len(frr_points)), hits, np.array([fa_points]), np.array([100]), 1.0
    )


def _write_run(out: Path, quick: bool, source: str, untrained: bool, frr_ok: float, frr_oww: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = {"started": "2026-01-01 00:00 UTC", "git": "abc", "command": "python -m bench.run_all", "quick": quick,
           "machine": {"cpu": "test", "cores": 2}, "openkws_model": {"dir": "m", "untrained": untrained},
           "data": {"source": source, "streams": 1, "negative_hours": 1.0, "total_hours": 1.0, "positives": 100,
                    "snr_db": [0, 10]}, "wall_s": 60}  # fmt: skip
    (out / "run.json").write_text(json.dumps(run))
    for system, frr in (("openkws", frr_ok), ("openwakeword", frr_oww)):
        c = _curve([frr, 0.9], [0, 0])
        sets = {"a": {"keywords": ["kw"], "curve": c.to_json(), "summary": summarize(c)}}
        (out / f"streaming_{system}.json").write_text(
            json.dumps({"system": system, "version": "1", "sets": sets})
        )
    speed = {"audio_s": 60, "reps": 3, "systems": {
        "openkws": [{"keywords": 100, "rtf": 0.01, "peak_rss_mib": 100, "enroll_s": 1.0}],
        "openwakeword": [{"keywords": 5, "rtf": 0.05, "peak_rss_mib": 90, "enroll_s": 0.1}]}}  # fmt: skip
    (out / "speed.json").write_text(json.dumps(speed))


def test_unpublishable_run_keeps_numbers_out_of_the_docs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_run(out, quick=True, source="smoke", untrained=True, frr_ok=0.12, frr_oww=0.2)
    report, doc = write_report(out, tmp_path / "docs" / "BENCHMARKS.md")
    assert "12.0%" in report.read_text()
    text = doc.read_text()
    assert "12.0%" not in text and "0.0100" not in text
    assert NOT_MEASURED in text and "a --quick run" in text


def test_publishable_run_fills_tables_and_judges_targets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_run(out, quick=False, source="data-layer", untrained=False, frr_ok=0.25, frr_oww=0.2)
    _, doc = write_report(out, tmp_path / "docs" / "BENCHMARKS.md")
    text = doc.read_text()
    assert "25.0%" in text
    lines = {
        ln.split("|")[1].strip(): ln
        for ln in text.splitlines()
        if ln.startswith("| Set (a)") or ln.startswith("| Per-stream")
    }
    assert "**missed**" in next(
        v for k, v in lines.items() if k.startswith("Set (a)")
    )  # 25% vs 20%: > 2 points
    assert "| met |" in next(v for k, v in lines.items() if k.startswith("Per-stream"))  # 5x cheaper


def test_publishable_rules() -> None:
    good = {"quick": False, "data": {"source": "data-layer"}, "openkws_model": {"untrained": False}}
    assert publishable(good) == (True, [])
    ok, why = publishable({**good, "openkws_model": {"untrained": True}})
    assert not ok and "untrained" in why[0]


def test_openkws_tts_gets_its_own_rows(tmp_path: Path) -> None:
    """A new system name (openkws-tts) is listed under its display name next to openkws."""
    out = tmp_path / "out"
    _write_run(out, quick=True, source="smoke", untrained=True, frr_ok=0.12, frr_oww=0.2)
    c = _curve([0.07, 0.9], [0, 0])
    sets = {"a": {"keywords": ["kw"], "curve": c.to_json(), "summary": summarize(c)}}
    (out / "streaming_openkws-tts.json").write_text(
        json.dumps({"system": "openkws-tts", "version": "1", "sets": sets})
    )
    report, _ = write_report(out, tmp_path / "docs" / "BENCHMARKS.md")
    rows = [ln for ln in report.read_text().splitlines() if ln.startswith("| openkws")]
    assert any(ln.startswith("| openkws (TTS proxies) ") and "7.0%" in ln for ln in rows), rows

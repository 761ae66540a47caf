"""Write the benchmark report from ``bench/out/*.json``.

Two outputs from one renderer:

* ``bench/out/REPORT.md`` -- every run, whatever it was (quick, smoke data, untrained model), with
  its numbers, for the developer who ran it;
* ``docs/BENCHMARKS.md`` -- the published page. It carries numbers only from a *publishable* run:
  the full protocol (not ``--quick``), the data layer's evaluation sets, and a trained model. For
  any other run every figure reads "not yet measured", so the docs never show a number that is not
  a benchmark result. Its plots are copied to ``docs/benchmarks/``.

The sections live by concern in :mod:`bench.report_about` (run, systems, quoted figures, how to
reproduce), :mod:`bench.report_detection` (targets, streaming, pairs) and :mod:`bench.report_cost`
(speed, service); :mod:`bench.report_view` holds what they share.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.page_sections import keep_section
from bench.report_about import header, published_section, reproduce_section, systems_section
from bench.report_cost import service_section, speed_section
from bench.report_detection import pairs_section, streaming_section, target_section
from bench.report_view import View, publishable


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_results(out: Path) -> dict[str, Any]:
    res: dict[str, Any] = {
        "run": _load(out / "run.json") or {},
        "streaming": {},
        "pairs": {},
        "speed": {},
        "service": None,
    }
    for p in sorted(out.glob("streaming_*.json")):
        r = _load(p)
        res["streaming"][r["system"]] = r
    for p in sorted(out.glob("pairs_*.json")):
        r = _load(p)
        res["pairs"][r["name"]] = r
    res["speed"] = _load(out / "speed.json") or {}
    res["service"] = _load(out / "service.json")
    return res


SECTIONS = (
    header,
    target_section,
    streaming_section,
    pairs_section,
    speed_section,
    service_section,
    systems_section,
    published_section,
    reproduce_section,
)


def render(view: View) -> str:
    return "\n".join(line for section in SECTIONS for line in section(view)).rstrip() + "\n"


def write_report(out: Path, doc: Path) -> tuple[Path, Path]:
    """Write ``out/REPORT.md`` (this run, numbers shown) and ``doc`` (numbers only if publishable)."""
    res = load_results(out)
    report = out / "REPORT.md"
    report.write_text(render(View(res, show=True, img=".")))
    ok, _ = publishable(res["run"])
    img = ""
    if ok:
        dest = doc.parent / "benchmarks"
        dest.mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy2(png, dest / png.name)
        img = "benchmarks"
    doc.parent.mkdir(parents=True, exist_ok=True)
    old = doc.read_text() if doc.is_file() else ""  # sections other commands write (perf suite, ...) stay
    doc.write_text(keep_section(render(View(res, show=ok, img=img)), old))
    return report, doc

"""One source for every figure: README, the model card and SERVICE.md quote accuracy and speed only
inside ``<!-- figures: docs/BENCHMARKS.md -->`` blocks, and every number there is on that generated page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "BENCHMARKS.md"
DOCS = ("README.md", "src/openkws/models/default/MODEL_CARD.md", "docs/SERVICE.md")
BLOCK = re.compile(r"<!-- figures: docs/BENCHMARKS.md -->(.*?)<!-- /figures -->", re.S)
# Measurements: percentages, decimals, millisecond and second values. Targets are goals, not figures.
FIGURE = re.compile(r"\d+\.\d+%?|\d+%|\d+(?:\.\d+)? ms\b")
TARGET = re.compile(r"targets? \([^)]*\)|\d+(?:\.\d+)?% target")


def _figures(text: str) -> list[str]:
    return FIGURE.findall(TARGET.sub("", text))


@pytest.mark.parametrize("doc", DOCS)
def test_quoted_figures_come_from_the_benchmark_page(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert blocks, f"{doc} quotes no figures block"
    source = SOURCE.read_text(encoding="utf-8")
    missing = [f for b in blocks for f in _figures(b) if f not in source]
    assert not missing, f"{doc}: figures not in docs/BENCHMARKS.md: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_no_eer_quoted_outside_the_blocks(doc: str) -> None:
    outside = BLOCK.sub("", (ROOT / doc).read_text(encoding="utf-8"))
    stray = [m.group(0) for m in re.finditer(r"EER[^.\n]{0,40}?\d+\.\d+%", outside)]
    assert not stray, f"{doc}: EER figures outside a figures block: {stray}"

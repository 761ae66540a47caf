"""Regenerate ``docs/BENCHMARKS.md`` from ``bench/out/*.json`` (placeholder until filled in)."""

from __future__ import annotations

from pathlib import Path


def write_report(out: Path, doc: Path) -> None:
    pass

"""Misses by keyword length from a pairs run (``openkws eval pairs --out DIR`` -> ``DIR/scores.csv``).

The threshold of each system is set where its false-accept rate on the easy (random-text)
mismatches equals ``far`` (1%: background speech rarely matches a keyword); each length bucket
(phones of the keyword's pronunciation) then gets its false-reject rate and median match score.

Usage: ``openkws eval length-frr runs/eval/x/scores.csv --manifest <csv> [--far 0.01]``

Example:
    >>> bucket(3), bucket(4), bucket(9)
    ('<=3', '4-5', '>=9')
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

BUCKETS = ("<=3", "4-5", "6-8", ">=9")


def bucket(phones: int) -> str:
    return (
        BUCKETS[0]
        if phones <= 3
        else BUCKETS[1]
        if phones <= 5
        else BUCKETS[2]
        if phones <= 8
        else BUCKETS[3]
    )


def length_table(
    scores: Path, manifest: Path, far: float = 0.01
) -> dict[str, dict[str, tuple[int, float, float]]]:
    """{system: {bucket: (positives, FRR, median positive score)}}."""
    phones = {}
    with open(manifest, newline="") as f:
        for row in csv.DictReader(f):
            phones[row["text"]] = len(row["phonemes"].replace("|", " ").split())
    with open(scores, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{scores} holds no pairs")
    systems = [k for k in rows[0] if k not in ("path", "text", "label", "kind")]
    out: dict[str, dict[str, tuple[int, float, float]]] = {}
    for system in systems:
        easy = np.array([float(r[system]) for r in rows if r["kind"] == "easy"])
        theta = float(np.quantile(easy, 1.0 - far))
        pos: dict[str, list[float]] = {b: [] for b in BUCKETS}
        for r in rows:
            if r["kind"] == "positive" and r["text"] in phones:
                pos[bucket(phones[r["text"]])].append(float(r[system]))
        out[system] = {
            b: (len(v), float(np.mean(np.array(v) < theta)), float(np.median(v))) for b, v in pos.items() if v
        }
    return out

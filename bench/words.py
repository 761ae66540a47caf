"""Distinct, easily spoken words from which the load, soak and durability tools build keyword texts.

One list so that the soak's churn, the batch-import tests and the crash-durability test enrol the
same kind of keywords (phonetically distinct, two-syllable at most, never an evaluation keyword)."""

from __future__ import annotations

SPOKEN_WORDS: tuple[str, ...] = (
    "alpha",
    "bravo",
    "delta",
    "echo",
    "golf",
    "hotel",
    "india",
    "kilo",
    "lima",
    "mike",
    "oscar",
    "papa",
    "romeo",
    "sierra",
    "tango",
    "victor",
    "whiskey",
    "yankee",
    "zulu",
    "orange",
    "purple",
    "silver",
    "window",
    "garden",
    "river",
    "mountain",
    "pencil",
    "rocket",
    "camera",
    "doctor",
    "yellow",
    "basket",
    "violet",
    "marble",
)

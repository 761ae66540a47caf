"""Evaluation keywords: openWakeWord's five and the 50 benchmark keywords in ``keywords_bench.txt``.

None of these may be trained on: :mod:`openkws.training.data.splits` forces their distinctive words into
the held-out test-word set, and the long negative audio excludes every sentence containing them.

Example:
    >>> len(benchmark_keywords()), OPENWAKEWORD_KEYWORDS[1]
    (50, 'hey jarvis')
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

OPENWAKEWORD_KEYWORDS: tuple[str, ...] = ("alexa", "hey jarvis", "hey mycroft", "hey rhasspy", "okay nabu")


@lru_cache(maxsize=1)
def benchmark_keywords() -> tuple[str, ...]:
    """The 50 benchmark keywords, in file order (comments and blank lines skipped)."""
    text = resources.files("openkws.training.data").joinpath("keywords_bench.txt").read_text()
    return tuple(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def evaluation_keywords() -> tuple[str, ...]:
    """openWakeWord keywords followed by the benchmark keywords."""
    return OPENWAKEWORD_KEYWORDS + benchmark_keywords()

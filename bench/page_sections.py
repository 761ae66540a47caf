"""Sections of docs/BENCHMARKS.md that other commands own, between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers: a command replaces its own section (:func:`replace_section`), and
``bench/report.py`` keeps them when it rewrites the rest of the page (:func:`keep_section`).

Example:
    >>> keep_section("# B\\n\\nold\\n", "x\\n<!-- perf-suite:begin -->\\nperf\\n<!-- perf-suite:end -->\\n")
    '# B\\n\\nold\\n\\n<!-- perf-suite:begin -->\\nperf\\n<!-- perf-suite:end -->\\n'
"""

from __future__ import annotations

# Sections other commands own; `bench/report.py` regenerates the rest of the page around them.
KEPT_SECTIONS = ("perf-suite", "user-test", "eval-streams", "robust-ablation")


def replace_section(page: str, begin: str, end: str, block: str) -> str:
    """``page`` with its ``begin``..``end`` section replaced by ``block`` (which carries both
    markers), or ``block`` appended when the page has no such section.

    >>> replace_section("# B\\n<!-- a -->\\nold\\n<!-- b -->\\n", "<!-- a -->", "<!-- b -->", "<!-- a -->new<!-- b -->")
    '# B\\n<!-- a -->new<!-- b -->\\n'
    """
    if begin in page and end in page:
        return page[: page.index(begin)] + block + page[page.index(end) + len(end) :]
    return page.rstrip("\n") + "\n\n" + block + "\n"


def keep_section(new_page: str, old_page: str) -> str:
    """``new_page`` with each generated section of ``old_page`` (:data:`KEPT_SECTIONS`) appended,
    if it had one and ``new_page`` has none."""
    for name in KEPT_SECTIONS:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin in new_page or begin not in old_page or end not in old_page:
            continue
        section = old_page[old_page.index(begin) : old_page.index(end) + len(end)]
        new_page = new_page.rstrip("\n") + "\n\n" + section + "\n"
    return new_page

"""Phonetic confusability of two keywords: normalized phoneme edit distance and containment.

A new keyword is reported as confusable with an enrolled one when their proxies are close (cosine)
*and* their phones are close (edit distance) or one phrase contains the other ("hello" inside
"hello alexa": the partial phrase tends to fire the longer keyword).

Example:
    >>> phoneme_distance(("HH", "EY", "|", "JH", "AA", "R", "V", "AH", "S"), ("HH", "EY", "|", "T", "R", "AE", "V", "AH", "S"))
    0.375
    >>> relation(("HH", "AH", "L", "OW"), ("HH", "AH", "L", "OW", "|", "AH", "L", "EH", "K", "S", "AH"))
    'contained_in'
    >>> one_word_apart("turn on the lights", "turn off the lights"), one_word_apart("stop", "go")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

from ..text.phonemes import WORD_BOUNDARY


def phones(seq: Sequence[str]) -> tuple[str, ...]:
    return tuple(p for p in seq if p != WORD_BOUNDARY)


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two symbol sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def phoneme_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Edit distance over phones (word boundaries ignored) / the longer length, in [0, 1]."""
    pa, pb = phones(a), phones(b)
    longest = max(len(pa), len(pb))
    return 0.0 if longest == 0 else edit_distance(pa, pb) / longest


def length_gap(a: Sequence[str], b: Sequence[str]) -> float:
    """A lower bound of :func:`phoneme_distance` from the lengths alone."""
    la, lb = len(phones(a)), len(phones(b))
    return 0.0 if max(la, lb) == 0 else abs(la - lb) / max(la, lb)


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    n = len(inner)
    return 0 < n < len(outer) and any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def relation(new: Sequence[str], old: Sequence[str]) -> str | None:
    """``'contains'`` / ``'contained_in'`` when one keyword's phones occur inside the other's."""
    pn, po = phones(new), phones(old)
    if _contains(pn, po):
        return "contains"
    if _contains(po, pn):
        return "contained_in"
    return None


def one_word_apart(a: str, b: str) -> bool:
    """Two phrases of 2+ words that differ by one word (substituted, inserted or deleted).

    Such pairs ("turn on the lights" / "turn off the lights") share most of their audio, so each
    tends to fire on the other whatever their embeddings' cosine.
    """
    wa, wb = a.split(), b.split()
    return max(len(wa), len(wb)) >= 2 and wa != wb and edit_distance(wa, wb) == 1

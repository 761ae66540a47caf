"""Phonetic confusability of two keywords: normalized phoneme edit distance and containment.

A new keyword is reported as confusable with an enrolled one when their proxies are close (cosine)
*and* their phones are close (edit distance) or one phrase contains the other ("hello" inside
"hello alexa": the partial phrase tends to fire the longer keyword).

Example:
    >>> phoneme_distance(("HH", "EY", "|", "JH", "AA", "R", "V", "AH", "S"), ("HH", "EY", "|", "T", "R", "AE", "V", "AH", "S"))
    0.375
    >>> relation(("HH", "AH", "L", "OW"), ("HH", "AH", "L", "OW", "|", "AH", "L", "EH", "K", "S", "AH"))
    'contained_in'
    >>> on = ("T", "ER", "N", "|", "AA", "N", "|", "DH", "AH", "|", "L", "AY", "T", "S")
    >>> off = ("T", "ER", "N", "|", "AO", "F", "|", "DH", "AH", "|", "L", "AY", "T", "S")
    >>> one_word_apart(on, off), one_word_apart(("S", "T", "AA", "P"), ("G", "OW"))
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


def _words(seq: Sequence[str]) -> list[tuple[str, ...]]:
    out: list[list[str]] = [[]]
    for p in seq:
        if p == WORD_BOUNDARY:
            out.append([])
        else:
            out[-1].append(p)
    return [tuple(w) for w in out if w]


def one_word_apart(a: Sequence[str], b: Sequence[str]) -> bool:
    """Two phrases (phonemes, ``|`` between words) that differ by one word (substituted, inserted or
    deleted) while the words they share carry at least half of the longer phrase's phones.

    Such pairs ("turn on the lights" / "turn off the lights") share most of their audio, so each
    tends to fire on the other whatever their embeddings' cosine.
    """
    wa, wb = _words(a), _words(b)
    if max(len(wa), len(wb)) < 2 or wa == wb or edit_distance(wa, wb) != 1:  # type: ignore[arg-type]
        return False
    shared = sum(len(w) for w in wa if w in wb)
    return 2 * shared >= max(len(phones(a)), len(phones(b)))

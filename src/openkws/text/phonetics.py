"""Phonetics in one place: edit distances between pronunciations, confusable neighbours, and the
containment relation. Used by the service (confusable keywords at enrollment), training (hard
negatives, evaluation pairs) and the benchmarks.

Word boundaries (``|``) never count: "ice cream" and "i scream" are the same phones.

Example:
    >>> edit_distance("kitten", "sitting")
    3
    >>> phoneme_distance(("HH", "EY", "|", "JH", "AA", "R", "V", "AH", "S"), ("HH", "EY", "|", "T", "R", "AE", "V", "AH", "S"))
    0.375
    >>> relation(("HH", "AH", "L", "OW"), ("HH", "AH", "L", "OW", "|", "AH", "L", "EH", "K", "S", "AH"))
    'contained_in'
    >>> one_edit_neighbours([(1, 2, 3), (1, 9, 3), (1, 2), (7, 8)])[(1, 2, 3)]
    [(1, 2), (1, 9, 3)]
    >>> edit_distances([1, 2, 3], np.array([[1, 2, 3, -1], [4, 2, 3, 5]]), np.array([3, 4])).tolist()
    [0, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np

from openkws.text.phonemes import WORD_BOUNDARY

T = TypeVar("T", bound=Hashable)


def phones(seq: Sequence[str] | str) -> tuple[str, ...]:
    """Phones of a pronunciation (tuple or space-separated string), word boundaries dropped."""
    items = seq.split() if isinstance(seq, str) else seq
    return tuple(p for p in items if p != WORD_BOUNDARY)


def edit_distance(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    substitution: Callable[[Hashable, Hashable], float] | None = None,
) -> float:
    """Levenshtein distance (insert/delete 1, substitute 1 or ``substitution(x, y)``)."""
    prev = [float(j) for j in range(len(b) + 1)]
    for i, x in enumerate(a, 1):
        cur = [float(i)] + [0.0] * len(b)
        for j, y in enumerate(b, 1):
            sub = 0.0 if x == y else (1.0 if substitution is None else substitution(x, y))
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + sub)
        prev = cur
    return int(prev[-1]) if substitution is None else prev[-1]


def phoneme_edit_distance(a: Sequence[str] | str, b: Sequence[str] | str) -> int:
    """Edit distance between two pronunciations in phones (word boundaries ignored)."""
    return int(edit_distance(phones(a), phones(b)))


def weighted_phoneme_distance(
    a: Sequence[str] | str, b: Sequence[str] | str, vowels: frozenset[str]
) -> float:
    """Edit distance where a same-class substitution (vowel/vowel, consonant/consonant) costs 0.5."""
    return edit_distance(phones(a), phones(b), lambda x, y: 0.5 if (x in vowels) == (y in vowels) else 1.0)


def phoneme_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Edit distance over phones / the longer length, in [0, 1]."""
    pa, pb = phones(a), phones(b)
    longest = max(len(pa), len(pb))
    return 0.0 if longest == 0 else edit_distance(pa, pb) / longest


def length_gap(a: Sequence[str], b: Sequence[str]) -> float:
    """A lower bound of :func:`phoneme_distance` from the lengths alone."""
    la, lb = len(phones(a)), len(phones(b))
    return 0.0 if max(la, lb) == 0 else abs(la - lb) / max(la, lb)


def edit_distances(query: Sequence[int], candidates: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Exact edit distances from ``query`` (ids) to each row of ``candidates`` [n, width] (padded
    with -1; row i has ``lengths[i]`` ids), vectorised over the rows."""
    q = np.asarray(query, dtype=np.int64)
    n, width = candidates.shape
    prev = np.tile(np.arange(width + 1, dtype=np.int64), (n, 1))
    for i, qi in enumerate(q, 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        best = np.minimum(prev[:, :-1] + (candidates != qi), prev[:, 1:] + 1)
        for j in range(1, width + 1):  # insertion chains left to right
            cur[:, j] = np.minimum(best[:, j - 1], cur[:, j - 1] + 1)
        prev = cur
    return np.asarray(prev[np.arange(n), lengths], dtype=np.int64)


def one_edit_neighbours(keys: Sequence[tuple[T, ...]]) -> dict[tuple[T, ...], list[tuple[T, ...]]]:
    """Pronunciations one edit apart (substitution, insertion or deletion), found with symmetric
    deletion keys instead of all-pairs edit distance (fast for tens of thousands of words)."""
    index: dict[tuple[T, ...], set[tuple[T, ...]]] = {}

    def variants(p: tuple[T, ...]) -> set[tuple[T, ...]]:
        return {p} | {p[:i] + p[i + 1 :] for i in range(len(p))}

    for p in keys:
        for v in variants(p):
            index.setdefault(v, set()).add(p)
    out: dict[tuple[T, ...], list[tuple[T, ...]]] = {}
    for p in keys:
        cands: set[tuple[T, ...]] = set()
        for v in variants(p):
            cands |= index.get(v, set())
        cands.discard(p)
        out[p] = sorted(cands)
    return out


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

    >>> on = ("T", "ER", "N", "|", "AA", "N", "|", "DH", "AH", "|", "L", "AY", "T", "S")
    >>> off = ("T", "ER", "N", "|", "AO", "F", "|", "DH", "AH", "|", "L", "AY", "T", "S")
    >>> one_word_apart(on, off), one_word_apart(("S", "T", "AA", "P"), ("G", "OW"))
    (True, False)
    """
    wa, wb = _words(a), _words(b)
    if max(len(wa), len(wb)) < 2 or wa == wb or edit_distance(wa, wb) != 1:
        return False
    shared = sum(len(w) for w in wa if w in wb)
    return 2 * shared >= max(len(phones(a)), len(phones(b)))

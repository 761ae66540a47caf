"""Confusable pronunciations: keyword classes one phoneme edit apart (the sampler's hard pairs)."""

from __future__ import annotations

from collections.abc import Sequence

Phones = tuple[int, ...]


def confusable_neighbours(keys: Sequence[Phones]) -> dict[Phones, list[Phones]]:
    """Pronunciations one phoneme edit apart (substitution, insertion or deletion), found with
    symmetric deletion keys instead of all-pairs edit distance (fast for tens of thousands of words).

    >>> nb = confusable_neighbours([(1, 2, 3), (1, 9, 3), (1, 2), (7, 8)])
    >>> nb[(1, 2, 3)], nb[(7, 8)]
    ([(1, 2), (1, 9, 3)], [])
    """
    index: dict[Phones, set[Phones]] = {}

    def variants(p: Phones) -> set[Phones]:
        return {p} | {p[:i] + p[i + 1 :] for i in range(len(p))}

    for p in keys:
        for v in variants(p):
            index.setdefault(v, set()).add(p)
    out: dict[Phones, list[Phones]] = {}
    for p in keys:
        cands: set[Phones] = set()
        for v in variants(p):
            cands |= index.get(v, set())
        cands.discard(p)
        out[p] = sorted(cands)
    return out

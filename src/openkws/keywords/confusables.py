"""Confusable keywords, announced at enrollment: which enrolled keywords sound like a new one.

Candidates are the new proxy's nearest enrolled proxies, the earlier keywords of the same batch,
and every phrase one word apart (those fire on each other whatever their cosine); each is kept
when the phonemes are close, one contains the other, or they are one word apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openkws.engine.index import TenantIndex
from openkws.keywords.store import KeywordRecord
from openkws.text.phonetics import length_gap, one_word_apart, phoneme_distance, relation


@dataclass(frozen=True)
class ConfusionPolicy:
    min_cosine: float = 0.75
    max_phoneme_distance: float = 0.5
    top_k: int = 10


@dataclass(frozen=True)
class Confusable:
    id: int
    text: str
    cosine: float
    phoneme_distance: float
    reason: str  # "similar" | "contains" | "contained_in" | "one_word"


def find_confusables(
    rec: KeywordRecord,
    proxy: np.ndarray,
    before: TenantIndex,
    batch: Sequence[tuple[KeywordRecord, np.ndarray]],
    pol: ConfusionPolicy,
) -> tuple[Confusable, ...]:
    """Enrolled keywords (and earlier ones of the same batch) that sound like ``rec``: close proxies
    with a close pronunciation, one containing the other, or phrases one word apart."""
    cands: dict[int, tuple[str, tuple[str, ...], float]] = {}
    scores, ids = before.search(proxy[None, :], pol.top_k)
    for s, kid in zip(scores[0], ids[0], strict=True):
        e = before.by_id.get(int(kid))
        if e is not None:
            cands[e.id] = (e.text, e.phonemes, float(s))
    for other, p in batch:
        cands.setdefault(other.id, (other.text, other.phonemes, float(proxy @ p)))
    for e in before.by_id.values():  # one word apart: confusable whatever the cosine
        if one_word_apart(rec.phonemes, e.phonemes):
            cands.setdefault(e.id, (e.text, e.phonemes, float(proxy @ e.proxy)))
    out = []
    for kid, (text, phonemes, cos) in cands.items():
        one = one_word_apart(rec.phonemes, phonemes)
        if kid == rec.id or (cos < pol.min_cosine and not one):
            continue
        rel = relation(rec.phonemes, phonemes)
        if rel is None and not one and length_gap(rec.phonemes, phonemes) > pol.max_phoneme_distance:
            continue  # the distance is at least the length gap: skip the O(n*m) edit distance
        dist = phoneme_distance(rec.phonemes, phonemes)
        similar = cos >= pol.min_cosine and dist <= pol.max_phoneme_distance
        if rel is None and not one and not similar:
            continue
        reason = rel or ("one_word" if one else "similar")
        out.append(Confusable(kid, text, round(cos, 4), round(dist, 4), reason))
    return tuple(sorted(out, key=lambda c: (-c.cosine, c.id)))

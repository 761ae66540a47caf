"""LibriPhrase-style (audio, text) evaluation pairs: positives, easy negatives, hard negatives.

API::

    phoneme_edit_distance(a, b) -> int            # from openkws.text.phonetics
    build_pairs(items, candidate_texts=None, seed=0, max_distance=2, easy_per_item=1,
                hard_per_item=1) -> list[Pair]

``items`` are clips: ``PairItem(path, text, phonemes)`` (``phonemes`` as a tuple or the manifest's
space-separated string, ``|`` allowed). ``candidate_texts`` are the texts negatives are drawn from
(default: the items' own distinct texts), each as ``(text, phonemes)`` or a bare text (phonemised
with the shared G2P). For every item, :func:`build_pairs` emits:

* one ``positive`` pair: the clip with its own text (``label=1``);
* ``easy_per_item`` ``easy`` negatives (``label=0``): random candidates at phoneme distance
  greater than ``max_distance``;
* ``hard_per_item`` ``hard`` negatives (``label=0``): the most similar candidates with
  ``1 <= distance <= max_distance``, ranked by (distance, weighted distance where substituting a
  vowel for a vowel or a consonant for a consonant costs 0.5). Ties are broken by the seed.

Degenerate cases, by rule:

* Candidates pronounced identically to the item (distance 0: homophones such as "their"/"there",
  or "ice cream"/"i scream") are never negatives: no audio could tell them apart.
* A hard negative must keep most of the item: ``distance <= max(1, len(phones) - 1)``. A 1-phone
  text ("a") gets 1-edit neighbours ("i", "at"), a 2-phone text only 1-edit neighbours, otherwise
  "hard" would include texts sharing no phone with the item.
* An item with no candidate in range gets no hard (or easy) negative; nothing is padded, so
  ``Counter(p.kind for p in pairs)`` shows the true counts.

``Pair.start``/``Pair.end`` (seconds) delimit the audio to score; ``end=None`` means the whole file.

Example:
    >>> phoneme_edit_distance("K AE T", ("K", "AE", "|", "P"))
    1
    >>> items = [PairItem("a.wav", "cat", "K AE T"), PairItem("b.wav", "dog", "D AO G")]
    >>> cands = [("cat", "K AE T"), ("cap", "K AE P"), ("dog", "D AO G"), ("banana", "B AH N AE N AH")]
    >>> [(p.text, p.label, p.kind) for p in build_pairs(items, cands, seed=0)[:3]]
    [('cat', 1, 'positive'), ('dog', 0, 'easy'), ('cap', 0, 'hard')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openkws.text.g2p import G2P
from openkws.text.phonemes import load_inventory
from openkws.text.phonetics import edit_distances, phoneme_edit_distance, phones
from openkws.text.phonetics import weighted_phoneme_distance as weighted_distance

MAX_HARD_DISTANCE = 2


@dataclass(frozen=True)
class PairItem:
    """A clip: audio path, its text, its phonemes (tuple or space-separated string)."""

    path: str
    text: str
    phonemes: tuple[str, ...] | str
    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class Pair:
    """An (audio, text) trial. ``label`` 1 = the audio says ``text``; ``distance`` = phone edits
    between the clip's own text and ``text``."""

    path: str
    text: str
    label: int
    kind: str  # "positive" | "easy" | "hard"
    distance: int
    start: float = 0.0
    end: float | None = None


def _phones(phonemes: Sequence[str] | str) -> tuple[str, ...]:
    return phones(phonemes)


def weighted_phoneme_distance(a: Sequence[str] | str, b: Sequence[str] | str) -> float:
    """Edit distance where a same-class substitution (vowel/vowel, consonant/consonant) costs 0.5."""
    return weighted_distance(a, b, load_inventory().vowels)


class _Candidates:
    """Candidate texts as a padded id matrix, for vectorised edit distances against one query."""

    def __init__(self, texts: list[str], phones: list[tuple[str, ...]]) -> None:
        inv = load_inventory()
        self.texts, self.phones = texts, phones
        self.lengths = np.array([len(p) for p in phones], dtype=np.int64)
        width = int(self.lengths.max()) if phones else 0
        self.ids = np.full((len(phones), max(width, 1)), -1, dtype=np.int64)
        for i, p in enumerate(phones):
            self.ids[i, : len(p)] = inv.encode(p)
        self.encode = inv.encode

    def distances(self, query: tuple[str, ...], rows: np.ndarray) -> np.ndarray:
        """Exact edit distance from ``query`` to each candidate in ``rows``."""
        return edit_distances(self.encode(query), self.ids[rows], self.lengths[rows])


def _as_candidates(
    candidate_texts: Iterable[tuple[str, Sequence[str] | str] | str],
) -> tuple[list[str], list[tuple[str, ...]]]:
    texts: list[str] = []
    phones: list[tuple[str, ...]] = []
    seen: set[str] = set()
    g2p = None
    for c in candidate_texts:
        if isinstance(c, str):
            if g2p is None:
                g2p = G2P()
            text, ph = c, _phones(g2p(c).phonemes)
        else:
            text, ph = c[0], _phones(c[1])
        if text not in seen and ph:
            seen.add(text)
            texts.append(text)
            phones.append(ph)
    return texts, phones


def build_pairs(
    items: Sequence[PairItem],
    candidate_texts: Iterable[tuple[str, Sequence[str] | str] | str] | None = None,
    seed: int = 0,
    max_distance: int = MAX_HARD_DISTANCE,
    easy_per_item: int = 1,
    hard_per_item: int = 1,
) -> list[Pair]:
    """Positive, easy-negative and hard-negative pairs for each item (see the module docstring)."""
    if candidate_texts is None:
        candidate_texts = [(it.text, it.phonemes) for it in items]
    texts, phones = _as_candidates(candidate_texts)
    cands = _Candidates(texts, phones)
    rng = np.random.default_rng(seed)
    all_rows = np.arange(len(texts))
    # Neighbour lists depend only on the text: computed once per distinct text.
    cache: dict[str, tuple[np.ndarray, list[int]]] = {}
    pairs: list[Pair] = []
    for it in items:
        query = _phones(it.phonemes)
        if not query:
            raise ValueError(f"{it.path}: item {it.text!r} has no phonemes")
        if it.text not in cache:
            near = all_rows[np.abs(cands.lengths - len(query)) <= max_distance] if len(texts) else all_rows
            d_near = cands.distances(query, near) if len(near) else np.zeros(0, np.int64)
            limit = min(max_distance, max(1, len(query) - 1))
            dist = {
                int(r): int(d)
                for r, d in zip(near, d_near, strict=True)
                if 1 <= d <= limit and texts[r] != it.text
            }
            tie = rng.permutation(len(texts))  # seeded tie-break
            hard = sorted(
                dist, key=lambda r: (dist[r], weighted_phoneme_distance(query, phones[r]), int(tie[r]))
            )
            too_close = np.zeros(len(texts), dtype=bool)
            too_close[near[d_near <= max_distance]] = True
            cache[it.text] = (too_close, hard)
        too_close, hard = cache[it.text]
        pairs.append(Pair(it.path, it.text, 1, "positive", 0, it.start, it.end))
        easy_rows = np.flatnonzero(~too_close)
        if len(easy_rows) and easy_per_item:
            for r in rng.choice(easy_rows, size=min(easy_per_item, len(easy_rows)), replace=False):
                r = int(r)
                pairs.append(
                    Pair(
                        it.path,
                        texts[r],
                        0,
                        "easy",
                        phoneme_edit_distance(query, phones[r]),
                        it.start,
                        it.end,
                    )
                )
        for r in hard[:hard_per_item]:
            pairs.append(
                Pair(it.path, texts[r], 0, "hard", phoneme_edit_distance(query, phones[r]), it.start, it.end)
            )
    return pairs

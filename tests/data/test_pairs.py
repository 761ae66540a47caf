"""LibriPhrase-style pairs: hard negatives really lie within the stated phoneme distance."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from openkws.text.g2p import G2P
from openkws.text.phonetics import phoneme_edit_distance
from openkws.training.data.pairs import (
    MAX_HARD_DISTANCE,
    PairItem,
    _Candidates,
    build_pairs,
)
from openkws.training.data.vocab import frequent_words


@pytest.fixture(scope="module")
def vocab() -> list[tuple[str, str]]:
    return [(t.text, " ".join(t.phonemes)) for t in frequent_words(1500, G2P())]


def test_edit_distance_basics() -> None:
    assert phoneme_edit_distance("K AE T", "K AE T") == 0
    assert phoneme_edit_distance("K AE T", "K AE") == 1
    assert phoneme_edit_distance("K AE T", "B AE D") == 2
    assert phoneme_edit_distance("", "K AE T") == 3
    # word boundaries do not count: "ice cream" and "i scream" sound alike
    assert phoneme_edit_distance("AY S | K R IY M", "AY | S K R IY M") == 0


def test_vectorised_distance_matches_reference(vocab: list[tuple[str, str]]) -> None:
    texts, phones = [t for t, _ in vocab], [tuple(p.split()) for _, p in vocab]
    cands = _Candidates(texts, phones)
    rng = np.random.default_rng(0)
    rows = np.arange(len(texts))
    for q in rng.choice(len(texts), size=15, replace=False):
        got = cands.distances(phones[int(q)], rows)
        want = [phoneme_edit_distance(phones[int(q)], p) for p in phones]
        assert got.tolist() == want


def test_hard_negatives_within_distance_and_never_homophones(vocab: list[tuple[str, str]]) -> None:
    items = [PairItem(f"{i}.wav", t, p) for i, (t, p) in enumerate(vocab[:400])]
    pairs = build_pairs(items, vocab, seed=1)
    by_kind = collections.Counter(p.kind for p in pairs)
    assert by_kind["positive"] == len(items)
    assert by_kind["hard"] > 0.8 * len(items)
    phon = dict(vocab)
    for p, it in ((p, items[int(p.path.split(".")[0])]) for p in pairs):
        d = phoneme_edit_distance(it.phonemes, phon[p.text])
        assert d == p.distance
        if p.kind == "positive":
            assert p.label == 1 and p.text == it.text
        elif p.kind == "hard":
            n = len(it.phonemes.split())
            assert p.label == 0 and 1 <= d <= min(MAX_HARD_DISTANCE, max(1, n - 1))
        else:
            assert p.kind == "easy" and p.label == 0 and d > MAX_HARD_DISTANCE


def test_hard_negatives_ranked_by_distance() -> None:
    items = [PairItem("a.wav", "cat", "K AE T")]
    cands = [
        ("cat", "K AE T"),
        ("cab", "K AE B"),
        ("scatter", "S K AE T ER"),
        ("cut", "K AH T"),
        ("kitten", "K IH T AH N"),
    ]
    hard = [p for p in build_pairs(items, cands, seed=0, hard_per_item=3) if p.kind == "hard"]
    # distance 1 first (cab, cut), then distance 2 (scatter); kitten (3) is not hard
    assert [p.distance for p in hard] == [1, 1, 2]
    assert hard[2].text == "scatter"


def test_one_phone_text_and_homophone_rules() -> None:
    items = [PairItem("a.wav", "a", "AH")]
    cands = [("a", "AH"), ("uh", "AH"), ("i", "AY"), ("at", "AE T"), ("but", "B AH T")]
    pairs = build_pairs(items, cands, seed=0, hard_per_item=5, easy_per_item=5)
    texts = {p.kind: set() for p in pairs}
    for p in pairs:
        texts[p.kind].add(p.text)
    assert "uh" not in texts.get("hard", set()) | texts.get("easy", set())  # homophone: never a negative
    assert texts["hard"] == {"i"}  # 1 edit only; "at" (AE T) is 2 edits, "but" is 2 edits
    assert "easy" not in texts  # nothing is more than 2 edits away


def test_deterministic_under_seed(vocab: list[tuple[str, str]]) -> None:
    items = [PairItem(f"{i}.wav", t, p) for i, (t, p) in enumerate(vocab[:50])]
    assert build_pairs(items, vocab, seed=5) == build_pairs(items, vocab, seed=5)
    assert build_pairs(items, vocab, seed=5) != build_pairs(items, vocab, seed=6)


def test_item_without_phonemes_is_an_error() -> None:
    with pytest.raises(ValueError, match="no phonemes"):
        build_pairs([PairItem("a.wav", "x", "")], [("b", "B IY")])

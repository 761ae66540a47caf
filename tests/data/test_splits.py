"""Open-vocabulary splits: test words and held-out voices never reach train."""

from __future__ import annotations

import collections

import pytest

from openkws.training.data.keywords import OPENWAKEWORD_KEYWORDS, benchmark_keywords
from openkws.training.data.plan import RECIPES, build_plan
from openkws.training.data.splits import check_disjoint, clip_split, exempt_words, is_test_word, text_split
from openkws.training.data.tts import list_voices


@pytest.fixture(scope="module")
def small_plan():  # type: ignore[no-untyped-def]
    return build_plan(RECIPES["small"], seed=0)


def test_plan_splits_are_disjoint(small_plan) -> None:  # type: ignore[no-untyped-def]
    train = [s for s in small_plan if s.split == "train"]
    held = [s for s in small_plan if s.split != "train"]
    train_words = {w for s in train for w in s.text.split()}
    test_words = {w for s in small_plan if s.split == "test" for w in s.text.split() if is_test_word(w)}
    assert test_words and not (train_words & test_words)
    assert not ({s.voice for s in train} & {s.voice for s in held})
    heldout_ids = {v.id for v in list_voices() if v.split == "heldout"}
    assert {s.voice for s in held} <= heldout_ids
    assert all(s.engine != "piper" for s in train)
    check_disjoint({"path": s.path, "text": s.text, "voice": s.voice, "split": s.split} for s in small_plan)


def test_about_ten_percent_of_words_are_test_words(small_plan) -> None:  # type: ignore[no-untyped-def]
    words = {s.text for s in small_plan if " " not in s.text} - exempt_words()
    frac = sum(map(is_test_word, words)) / len(words)
    assert 0.05 < frac < 0.2


def test_every_evaluation_keyword_is_a_test_text() -> None:
    for kw in (*OPENWAKEWORD_KEYWORDS, *benchmark_keywords()):
        assert text_split(kw) == "test", kw
    assert len(set(benchmark_keywords())) == 50
    assert collections.Counter(len(k.split()) for k in benchmark_keywords()).keys() == {1, 2, 3, 4}


def test_clip_split_table() -> None:
    assert clip_split("hey jarvis", "espeak:en-us+m1") is None  # test text never with a train voice
    assert clip_split("hey jarvis", "piper:joe") == "test"
    assert clip_split("the", "piper:joe") == "dev"
    assert clip_split("the", "espeak:en-us+m1") == "train"


def test_check_disjoint_catches_leaks() -> None:
    leak_word = {"path": "x.wav", "text": "hey jarvis", "voice": "espeak:en-us+m1", "split": "train"}
    leak_voice = {"path": "y.wav", "text": "the", "voice": "piper:joe", "split": "train"}
    for row in (leak_word, leak_voice):
        with pytest.raises(AssertionError):
            check_disjoint([row])

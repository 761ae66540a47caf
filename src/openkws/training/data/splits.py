"""Open-vocabulary splits: disjoint word sets and disjoint voice sets.

Words: a word is a *test word* when it is an evaluation-keyword word (see
:mod:`openkws.training.data.keywords`) or when a salted CRC32 of it falls in the lowest
``TEST_FRACTION`` (10 %) of the hash range. Hashing makes the assignment independent of the
vocabulary, the recipe and the seed, so every run, and any later word list, agrees on it.
:data:`EXEMPT_WORDS` (the most frequent English words and the template/command words) are never
test words, otherwise "the" or "turn" landing in the test set would drag most phrases with it.

Voices: :data:`openkws.training.data.tts.HELDOUT_VOICES` (all of Piper plus a few espeak-ng/flite
identities) are held out.

A clip's split follows from its text and voice:

=================  ===============  ==================
text \\ voice       train voice      held-out voice
=================  ===============  ==================
only train words   ``train``        ``dev``
any test word      (never made)     ``test``
=================  ===============  ==================

Example:
    >>> is_test_word("jarvis"), is_test_word("the")
    (True, False)
    >>> text_split("hey jarvis"), text_split("turn on the radio")
    ('test', 'train')
    >>> clip_split("hello", "piper:joe")
    'dev'
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from functools import lru_cache

from openkws.training.data.keywords import evaluation_keywords
from openkws.training.data.tts import get_voice

TEST_FRACTION = 0.10
_SALT = "openkws-split-v1"
N_FREQUENT_EXEMPT = 150
TEMPLATE_WORDS: frozenset[str] = frozenset(
    [
        "hey",
        "okay",
        "hello",
        "hi",
        "turn",
        "on",
        "off",
        "the",
        "a",
        "an",
        "to",
        "up",
        "play",
        "stop",
        "open",
        "call",
        "please",
        "set",
        "show",
        "start",
        "what",
        "where",
        "is",
        "are",
        "my",
        "me",
        "some",
    ]
)


@lru_cache(maxsize=1)
def exempt_words() -> frozenset[str]:
    """Words never held out: the top :data:`N_FREQUENT_EXEMPT` by wordfreq, plus template words."""
    from wordfreq import top_n_list  # lazy: loads large word lists

    return frozenset(top_n_list("en", N_FREQUENT_EXEMPT)) | TEMPLATE_WORDS


@lru_cache(maxsize=1)
def forced_test_words() -> frozenset[str]:
    """Every non-exempt word of every evaluation keyword."""
    words = {w for kw in evaluation_keywords() for w in kw.split()}
    return frozenset(words - exempt_words())


def is_test_word(word: str) -> bool:
    """True when ``word`` (lowercase) belongs to the held-out test vocabulary."""
    if word in forced_test_words():
        return True
    if word in exempt_words():
        return False
    return zlib.crc32(f"{_SALT}:{word}".encode()) < TEST_FRACTION * 2**32


def text_split(text: str) -> str:
    """``test`` when any word of the (normalised, space-separated) text is a test word, else ``train``."""
    return "test" if any(is_test_word(w) for w in text.split()) else "train"


def clip_split(text: str, voice_id: str) -> str | None:
    """The manifest split of a clip, or ``None`` for the forbidden combination (test text, train voice)."""
    heldout = get_voice(voice_id).split == "heldout"
    if text_split(text) == "test":
        return "test" if heldout else None
    return "dev" if heldout else "train"


def check_disjoint(rows: Iterable[Mapping[str, str]]) -> None:
    """Raise ``AssertionError`` if a manifest leaks test words or held-out voices into ``train``,
    or if a row's ``split`` disagrees with :func:`clip_split`."""
    for row in rows:
        expected = clip_split(row["text"], row["voice"])
        if row["split"] != expected:
            raise AssertionError(f"{row['path']}: split {row['split']!r}, expected {expected!r}")
        if row["split"] == "train":
            leaked = [w for w in row["text"].split() if is_test_word(w)]
            if leaked or get_voice(row["voice"]).split != "train":
                raise AssertionError(f"{row['path']}: train clip leaks {leaked or row['voice']}")

"""Training vocabulary: frequent CMUdict words (ranked by wordfreq) and generated 2-4 word phrases.

Words come from ``wordfreq.top_n_list("en", ...)`` filtered to plain lowercase words that CMUdict
knows (so pronunciations are dictionary ones, not guesses) and that the shared G2P accepts.
Phrases are built from templates ("turn on the X", "hey X", ...) and from random sequences of
frequent words; a phrase is a test phrase as soon as one of its words is a test word.

Example:
    >>> words = frequent_words(200)
    >>> words[0].text, words[0].zipf > 7
    ('the', True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openkws.text.g2p import G2P, G2PError
from openkws.training.data.splits import TEMPLATE_WORDS, is_test_word

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SINGLE_LETTER_WORDS = frozenset({"a", "i"})

# Command-like templates; "{}" is one vocabulary word. All fixed words are in TEMPLATE_WORDS, so a
# template phrase is a test phrase exactly when its slot word is a test word.
TEMPLATES: tuple[str, ...] = (
    "hey {}", "okay {}", "hello {}", "hi {}", "turn on the {}", "turn off the {}", "play {}",
    "stop the {}", "open the {}", "call {}", "show me {}", "start {}", "set the {}", "what is {}",
    "where is my {}", "{} please",
)  # fmt: skip


@dataclass(frozen=True)
class Text:
    """A word or phrase to synthesize: normalised text, space-free phoneme tuple (with ``|``), zipf."""

    text: str
    phonemes: tuple[str, ...]
    zipf: float

    @property
    def split(self) -> str:
        return "test" if any(is_test_word(w) for w in self.text.split()) else "train"


def _pronounce(g2p: G2P, text: str) -> tuple[str, ...] | None:
    try:
        pron = g2p(text)
    except G2PError:
        return None
    return pron.phonemes if pron.text == text else None


def frequent_words(n: int, g2p: G2P | None = None) -> list[Text]:
    """The ``n`` most frequent usable English words, most frequent first."""
    from wordfreq import top_n_list, zipf_frequency  # lazy: loads large word lists

    g2p = g2p or G2P()
    out: list[Text] = []
    for word in top_n_list("en", max(4 * n, 1000)):
        if len(out) >= n:
            break
        if not _WORD_RE.fullmatch(word) or not re.search(r"[aeiouy]", word):
            continue  # skips "xml", "s.j", numbers and symbols
        if len(word) < 2 and word not in _SINGLE_LETTER_WORDS:
            continue
        if not g2p.in_vocabulary(word):
            continue
        phones = _pronounce(g2p, word)
        if phones:
            out.append(Text(word, phones, zipf_frequency(word, "en")))
    return out


def make_phrases(
    words: Sequence[Text],
    n_train: int,
    n_test: int,
    rng: np.random.Generator,
    g2p: G2P | None = None,
    composer_pool: int = 3000,
) -> list[Text]:
    """Generate ``n_train`` train phrases and ``n_test`` test phrases (2-4 words), all distinct.

    Half come from :data:`TEMPLATES`, half are random word sequences drawn from the
    ``composer_pool`` most frequent words (frequency-weighted), so phrases sound like phrases. A test
    phrase gets one random test word at a random position. A phrase's zipf is its rarest word's.
    """
    g2p = g2p or G2P()
    zipf = {w.text: w.zipf for w in words}
    train_words = [w for w in words if w.split == "train" and w.text not in TEMPLATE_WORDS]
    test_words = [w for w in words if w.split == "test"]
    pool = [w for w in words[:composer_pool] if w.split == "train"]
    pool_p = np.array([10 ** (0.5 * w.zipf) for w in pool])
    pool_p /= pool_p.sum()
    seen = {w.text for w in words}
    out: list[Text] = []

    def draw(split: str) -> str:
        slot_words = test_words if split == "test" else train_words
        slot = slot_words[int(rng.integers(len(slot_words)))].text
        if rng.random() < 0.5:
            return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(slot)
        n_words = int(rng.choice([2, 3, 4], p=[0.55, 0.3, 0.15]))
        seq = [pool[int(i)].text for i in rng.choice(len(pool), size=n_words, p=pool_p)]
        if split == "test" or rng.random() < 0.5:  # half the train sequences carry a rarer slot word too
            seq[int(rng.integers(n_words))] = slot
        return " ".join(seq)

    for split, target in (("train", n_train), ("test", n_test)):
        made, attempts = 0, 0
        while made < target and attempts < 20 * target + 100:
            attempts += 1
            text = draw(split)
            if text in seen or (split == "train") != all(not is_test_word(w) for w in text.split()):
                continue
            phones = _pronounce(g2p, text)
            if phones is None:
                continue
            seen.add(text)
            out.append(Text(text, phones, min(zipf.get(w, 3.0) for w in text.split())))
            made += 1
    return out

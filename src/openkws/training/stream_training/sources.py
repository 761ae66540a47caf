"""Where the stream set's words come from: train words only, train voices only.

- Targets: single train words of 3+ phones and 2-4 word train phrases (``make_phrases``).
- Carriers: fortunes sentences (already free of evaluation keywords), cut into 2-7 word chunks
  made of train words.
- Sound-alikes: one-phone neighbours within the train lexicon, plus :data:`~.phrases.OPPOSITES`.
- Held-out validation (checkpoint choice): other target phrases, spoken by the held-out voices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openkws.text.g2p import G2P
from openkws.training.data.splits import is_test_word
from openkws.training.data.streams import fortune_sentences
from openkws.training.data.tts import HELDOUT_VOICES, list_voices
from openkws.training.data.vocab import frequent_words, make_phrases
from openkws.training.stream_training.phrases import (
    StreamItem,
    carrier_chunks,
    one_phone_neighbours,
    plan_items,
)

LEXICON_WORDS = 20_000
TARGET_WORDS = 6_000
TARGET_PHRASES = 8_000
VAL_TARGETS = 300
TRAIN_ENGINES = ("espeak", "flite")  # fast engines; Piper and flite:awb stay held out


@dataclass(frozen=True)
class Sources:
    targets: list[str]
    val_targets: list[str]
    carriers: list[str]
    lexicon: dict[str, tuple[str, ...]]
    neighbours: dict[str, set[str]]
    train_voices: list[str]
    heldout_voices: list[str]

    @property
    def allowed(self) -> set[str]:
        return set(self.lexicon)


def build_sources(seed: int = 0) -> Sources:
    g2p = G2P()
    words = [w for w in frequent_words(LEXICON_WORDS, g2p) if not is_test_word(w.text)]
    lexicon = {w.text: tuple(p for p in w.phonemes if p != "|") for w in words}
    rng = np.random.default_rng(seed)
    singles = [w.text for w in words[:TARGET_WORDS] if len(lexicon[w.text]) >= 3]
    phrases = [p.text for p in make_phrases(words, TARGET_PHRASES, 0, rng, g2p)]
    pool = sorted(set(singles) | set(phrases))
    rng.shuffle(pool)
    val, train = pool[:VAL_TARGETS], pool[VAL_TARGETS:]
    carriers = carrier_chunks(fortune_sentences(min_words=3), set(lexicon))
    voices = [v.id for v in list_voices(TRAIN_ENGINES) if v.id not in HELDOUT_VOICES]
    heldout = sorted(v for v in HELDOUT_VOICES if v.split(":")[0] in TRAIN_ENGINES)
    return Sources(train, val, carriers, lexicon, one_phone_neighbours(lexicon), voices, heldout)


def train_items(src: Sources, n: int, seed: int = 0) -> list[StreamItem]:
    return plan_items(src.targets, src.carriers, src.neighbours, src.allowed, src.train_voices, n, seed)


def val_items(src: Sources, n: int, seed: int = 1) -> list[StreamItem]:
    return plan_items(src.val_targets, src.carriers, src.neighbours, src.allowed, src.heldout_voices, n, seed)

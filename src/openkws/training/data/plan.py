"""Synthesis recipes and the deterministic clip plan: which text, which voice, which seed, in what order.

A :class:`Recipe` fixes the vocabulary size, the number of phrases, the clip budget per split and
the engine weights. :func:`build_plan` turns a recipe and a seed into an ordered list of
:class:`ClipSpec`; the same (recipe, seed) always gives the same plan, so synthesis is
reproducible and resumable (a clip's file name is its plan index).

Ordering makes any prefix usable for training: texts are shuffled into blocks of
:data:`BLOCK_TEXTS`, and each block emits *all* clips of its texts (shuffled, so voices and
engines interleave) before the next block starts. A partial run therefore holds complete classes
(every voice of a text), not one clip of everything.

Example:
    >>> plan = build_plan(RECIPES["tiny"], seed=0)
    >>> len(plan), plan[0].index
    (24, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openkws.text.g2p import G2P, G2PError
from openkws.text.tts import stable_hash
from openkws.training.data.keywords import evaluation_keywords
from openkws.training.data.splits import clip_split
from openkws.training.data.tts import Voice, list_voices
from openkws.training.data.vocab import Text, frequent_words, make_phrases

BLOCK_TEXTS = 500
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Recipe:
    """What ``openkws data synth`` renders. ``num_clips`` is split by ``split_fractions``."""

    name: str
    num_clips: int
    vocab_words: int  # most frequent usable words taken from wordfreq ∩ CMUdict
    train_phrases: int
    test_phrases: int
    dev_texts: int  # train texts also rendered by held-out voices (seen words, unseen voices)
    split_fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.86, "dev": 0.04, "test": 0.10}
    )
    min_clips_per_text: int = 2
    max_clips_per_text: int = 12
    freq_exponent: float = 0.25  # clips per text grow as frequency**0.25: frequent words get more voices
    train_engine_weights: dict[str, float] = field(
        default_factory=lambda: {"espeak": 0.70, "flite": 0.15, "festival": 0.15}
    )
    heldout_engine_weights: dict[str, float] = field(
        default_factory=lambda: {"piper": 0.40, "espeak": 0.45, "flite": 0.15}
    )
    include_eval_keywords: bool = True  # render the evaluation keywords with held-out voices (test split)


RECIPES: dict[str, Recipe] = {
    "default": Recipe(
        "default",
        num_clips=125_000,
        vocab_words=16_000,
        train_phrases=8_000,
        test_phrases=1_500,
        dev_texts=1_500,
    ),
    "small": Recipe(
        "small", num_clips=2_000, vocab_words=1_500, train_phrases=300, test_phrases=60, dev_texts=50
    ),
    # a few seconds of work: used by the tests
    "tiny": Recipe(
        "tiny",
        num_clips=24,
        vocab_words=300,
        train_phrases=20,
        test_phrases=6,
        dev_texts=4,
        split_fractions={"train": 0.5, "dev": 0.25, "test": 0.25},
        heldout_engine_weights={"espeak": 0.7, "flite": 0.3},  # Piper's 5 s load is tested elsewhere
        include_eval_keywords=False,
    ),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}") from None


@dataclass(frozen=True)
class ClipSpec:
    """One clip to render; ``path`` is relative to the synthesis output directory."""

    index: int
    text: str
    phonemes: tuple[str, ...]
    voice: str
    engine: str
    split: str
    seed: int
    lead_ms: float
    tail_ms: float

    @property
    def path(self) -> str:
        return f"clips/{self.index // 1000:04d}/{self.index:07d}.wav"


def _allocate(texts: list[Text], budget: int, recipe: Recipe, n_voices: int) -> np.ndarray:
    """Clips per text: at least ``min_clips``, the rest of the budget by frequency, capped.

    Water-filling: share the remaining budget by weight among texts with room below the cap,
    repeat with what the cap clipped off; leftover units go to the heaviest texts with room.
    """
    lo = min(recipe.min_clips_per_text, n_voices)
    hi = min(recipe.max_clips_per_text, n_voices)
    counts = np.full(len(texts), lo, dtype=np.int64)
    if not texts:
        return counts
    weights = np.array([10 ** (recipe.freq_exponent * t.zipf) for t in texts])
    if counts.sum() > budget:  # budget below the minimum: keep the most frequent texts only
        counts[:] = 0
        for i in np.argsort(-weights, kind="stable")[: budget // max(lo, 1)]:
            counts[i] = lo
        return counts
    by_weight = np.argsort(-weights, kind="stable")
    while (extra := budget - int(counts.sum())) > 0:
        room = hi - counts
        if room.sum() == 0:
            break  # every text already has every voice: the budget cannot be met
        w = np.where(room > 0, weights, 0.0)
        add = np.minimum(np.floor(extra * w / w.sum()).astype(np.int64), room)
        if add.sum() == 0:
            for i in by_weight:
                if extra == 0:
                    break
                if room[i] > 0:
                    add[i] = 1
                    extra -= 1
        counts += add
    return counts


def _voice_pool(voices: list[Voice], weights: dict[str, float]) -> tuple[list[Voice], np.ndarray]:
    pool = [v for v in voices if v.engine in weights]
    per_engine = {e: sum(v.engine == e for v in pool) for e in weights}
    p = np.array([weights[v.engine] / per_engine[v.engine] for v in pool])
    return pool, p / p.sum()


def build_plan(recipe: Recipe, seed: int = 0, g2p: G2P | None = None) -> list[ClipSpec]:
    """The ordered clip plan for ``recipe`` and ``seed`` (deterministic)."""
    g2p = g2p or G2P()
    rng = np.random.default_rng([seed, stable_hash(recipe.name)])
    words = frequent_words(recipe.vocab_words, g2p)
    phrases = make_phrases(words, recipe.train_phrases, recipe.test_phrases, rng, g2p)
    texts = words + phrases
    if recipe.include_eval_keywords:
        known = {t.text for t in texts}
        for kw in evaluation_keywords():
            try:
                pron = g2p(kw)
            except G2PError:
                continue
            if pron.text not in known:
                texts.append(Text(pron.text, pron.phonemes, 3.0))
    train_texts = [t for t in texts if t.split == "train"]
    test_texts = [t for t in texts if t.split == "test"]
    dev_idx = rng.choice(len(train_texts), size=min(recipe.dev_texts, len(train_texts)), replace=False)
    dev_texts = [train_texts[int(i)] for i in sorted(dev_idx)]

    voices = list_voices()
    train_pool = _voice_pool([v for v in voices if v.split == "train"], recipe.train_engine_weights)
    held_pool = _voice_pool([v for v in voices if v.split == "heldout"], recipe.heldout_engine_weights)

    # (text, role, voices) jobs; each text gets distinct voices.
    jobs: list[tuple[Text, str, list[str]]] = []
    for role, role_texts, (pool, p) in (
        ("train", train_texts, train_pool),
        ("dev", dev_texts, held_pool),
        ("test", test_texts, held_pool),
    ):
        budget = round(recipe.num_clips * recipe.split_fractions.get(role, 0.0))
        counts = _allocate(role_texts, budget, recipe, len(pool))
        for t, k in zip(role_texts, counts, strict=True):
            if k > 0:
                chosen = rng.choice(len(pool), size=int(k), replace=False, p=p)
                jobs.append((t, role, [pool[int(i)].id for i in chosen]))

    order = rng.permutation(len(jobs))
    plan: list[ClipSpec] = []
    for start in range(0, len(order), BLOCK_TEXTS):
        block = [
            (jobs[int(j)][0], jobs[int(j)][1], v)
            for j in order[start : start + BLOCK_TEXTS]
            for v in jobs[int(j)][2]
        ]
        for k in rng.permutation(len(block)):
            text, role, voice = block[int(k)]
            split = clip_split(text.text, voice)
            if split != role:
                raise AssertionError(f"plan bug: {text.text!r} with {voice} is {split}, planned as {role}")
            idx = len(plan)
            plan.append(
                ClipSpec(
                    index=idx,
                    text=text.text,
                    phonemes=text.phonemes,
                    voice=voice,
                    engine=voice.split(":", 1)[0],
                    split=split,
                    seed=stable_hash(seed, idx, text.text, voice),
                    lead_ms=float(rng.uniform(50, 150)),
                    tail_ms=float(rng.uniform(50, 150)),
                )
            )
    return plan

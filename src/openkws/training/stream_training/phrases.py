"""What the stream training set says: keyword phrases inside carrier sentences, and their traps.

Every stream is ``left carrier + spoken + gap + right carrier``, where ``spoken`` is one of

- ``pos``: the target phrase itself ("... turn on the lights | in the kitchen");
- ``repeat``: its first word doubled ("hey hey jarvis"), still a positive at the phrase's end;
- ``partial``: the phrase without its last word ("turn on the"), a negative for the target;
- ``soundalike``: one word swapped for a lexicon neighbour one phone away, or for its opposite
  (on/off, start/stop), a negative for the target.

The spoken text is always a phrase in its own right, so each stream has exactly one positive span
(the spoken text, ending where the left+spoken rendition ends). Only train words and train voices
are used: evaluation keywords, held-out words and held-out voices never appear (open vocabulary).

Example:
    >>> lex = {"lights": ("L", "AY", "T", "S"), "nights": ("N", "AY", "T", "S"), "on": ("AA", "N")}
    >>> sorted(one_phone_neighbours(lex)["lights"])
    ['nights']
    >>> swap_word("turn on the lights", 1, "off")
    'turn off the lights'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Opposites that differ in meaning but share the rest of the command: the confusions users report.
OPPOSITES: dict[str, str] = {
    "on": "off", "off": "on", "start": "stop", "stop": "start", "open": "close", "close": "open",
    "up": "down", "down": "up", "in": "out", "out": "in", "yes": "no", "no": "yes",
    "next": "last", "play": "pause", "pause": "play", "lock": "unlock", "unlock": "lock",
}  # fmt: skip
POS_REPEAT = 0.2  # share of first items that double the first word ("hey hey jarvis")
TRAP_KINDS = ("partial", "soundalike", "pos")
TRAP_P = (0.4, 0.45, 0.15)
CARRIER_WORDS = (2, 7)  # words in each carrier chunk


@dataclass(frozen=True)
class StreamItem:
    """One stream to render. ``left`` and ``spoken`` are rendered together (natural prosody into the
    phrase), ``right`` separately after a gap; the positive span is ``spoken``'s end."""

    idx: int
    target: str  # the phrase this stream was drawn for
    kind: str  # pos | repeat | partial | soundalike
    spoken: str  # what is said where the target would be (itself a phrase)
    left: str
    right: str
    voice: str
    seed: int


def swap_word(phrase: str, i: int, word: str) -> str:
    words = phrase.split()
    words[i] = word
    return " ".join(words)


def one_phone_neighbours(lexicon: Mapping[str, tuple[str, ...]]) -> dict[str, set[str]]:
    """Words whose pronunciations are one phone substitution, insertion or deletion apart
    (symmetric-delete index: two words are neighbours when they share a one-phone deletion or one
    is a deletion of the other)."""
    index: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for w, ph in lexicon.items():
        index[ph].add(w)
        for k in range(len(ph)):
            index[ph[:k] + ph[k + 1 :]].add(w)
    out: dict[str, set[str]] = defaultdict(set)
    for group in index.values():
        if len(group) > 1:
            for w in group:
                out[w] |= group - {w}
    # Homophones (identical phones) are the same keyword to the model: not a sound-alike.
    return {w: {n for n in ns if lexicon[n] != lexicon[w]} for w, ns in out.items()}


def soundalike(
    phrase: str, neighbours: Mapping[str, set[str]], rng: np.random.Generator, allowed: set[str]
) -> str | None:
    """The phrase with one word swapped for its opposite or a one-phone neighbour; None if none."""
    words = phrase.split()
    options: list[tuple[int, str]] = [(i, OPPOSITES[w]) for i, w in enumerate(words) if w in OPPOSITES]
    for i, w in enumerate(words):
        options += [(i, n) for n in sorted(neighbours.get(w, ())) if n in allowed]
    if not options:
        return None
    i, w = options[int(rng.integers(len(options)))]
    return swap_word(phrase, i, w)


def carrier_chunks(sentences: Sequence[str], allowed: set[str]) -> list[str]:
    """Chunks of 2-7 words of running text, made of allowed (train) words only."""
    out = []
    for s in sentences:
        words = s.split()
        if not all(w in allowed for w in words):
            continue
        for i in range(0, len(words), CARRIER_WORDS[1]):
            chunk = words[i : i + CARRIER_WORDS[1]]
            if len(chunk) >= CARRIER_WORDS[0]:
                out.append(" ".join(chunk))
    return out


def _spoken(
    target: str, kind: str, neighbours: Mapping[str, set[str]], rng: np.random.Generator, allowed: set[str]
) -> tuple[str, str]:
    """(kind, spoken) for ``target``; ``pos`` when the kind does not apply (one-word partial...)."""
    words = target.split()
    spoken: str | None = target
    if kind == "repeat":
        spoken = " ".join([words[0], *words])
    elif kind == "partial":
        spoken = " ".join(words[:-1]) if len(words) > 1 else None
    elif kind == "soundalike":
        spoken = soundalike(target, neighbours, rng, allowed)
    return (kind, spoken) if spoken is not None else ("pos", target)


def plan_items(
    targets: Sequence[str],
    carriers: Sequence[str],
    neighbours: Mapping[str, set[str]],
    allowed: set[str],
    voices: Sequence[str],
    n: int,
    seed: int = 0,
) -> list[StreamItem]:
    """``n`` streams in pairs about one target: item ``2k`` says it (``pos`` or ``repeat``), item
    ``2k+1`` is its trap (``partial`` or ``soundalike``, else ``pos`` in another voice), so every
    trap meets a positive of its target in the same batch. Carriers and train voices at random."""
    if not targets or not carriers or not voices:
        raise ValueError("plan_items needs targets, carriers and voices (got an empty list)")
    rng = np.random.default_rng(seed)

    def item(idx: int, target: str, kind: str, spoken: str) -> StreamItem:
        return StreamItem(
            idx=idx,
            target=target,
            kind=kind,
            spoken=spoken,
            left=carriers[int(rng.integers(len(carriers)))] if rng.random() < 0.85 else "",
            right=carriers[int(rng.integers(len(carriers)))] if rng.random() < 0.85 else "",
            voice=voices[int(rng.integers(len(voices)))],
            seed=int(rng.integers(2**31)),
        )

    items: list[StreamItem] = []
    while len(items) < n:
        target = targets[int(rng.integers(len(targets)))]
        first = "repeat" if rng.random() < POS_REPEAT else "pos"
        trap = str(rng.choice(TRAP_KINDS, p=TRAP_P))
        for kind in (first, trap)[: n - len(items)]:
            k, spoken = _spoken(target, kind, neighbours, rng, allowed)
            items.append(item(len(items), target, k, spoken))
    return items

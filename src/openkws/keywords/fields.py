"""The keyword field rules that REST (:mod:`openkws.server.api.schemas`) and keyword files
(:mod:`openkws.keywords.keyfile`) share: one coercion policy for both doors.

* ``text`` is a string; the service normalises it (:func:`stored_text` gives the text it stores, so a
  file can find duplicates before enrolling).
* ``threshold`` is a number in [0, 1] and ``target_fa_per_hour`` (a file's ``sensitivity``) a number in
  [:data:`MIN_TARGET_FA_PER_HOUR`, :data:`MAX_TARGET_FA_PER_HOUR`]; booleans and strings are not numbers.
* ``phonemes`` is a list of ARPAbet symbols or one string split on spaces: at most
  :data:`MAX_PHONEMES` symbols (``|`` between words counts), however it is written.
* ``metadata`` is a JSON object with finite numbers only (no NaN or infinity).

Example:
    >>> stored_text("Hello   There!")
    'hello there'
    >>> phoneme_tokens("HH AH | L OW")
    ('HH', 'AH', '|', 'L', 'OW')
    >>> finite_json({"a": [1, float("nan")]})
    Traceback (most recent call last):
    ...
    ValueError: metadata.a[1] holds nan, which is not a JSON number; use finite numbers or strings
"""

from __future__ import annotations

import math
from typing import Any

from openkws.text.g2p import check_keyword_text, normalize

__all__ = [
    "MAX_PHONEMES",
    "MAX_PHONEME_STRING_CHARS",
    "THRESHOLD_RANGE",
    "finite_json",
    "phoneme_tokens",
    "stored_text",
]

THRESHOLD_RANGE = (0.0, 1.0)
MAX_PHONEMES = 256  # symbols, not characters: an exported 120-phoneme override is ~300 characters
MAX_PHONEME_STRING_CHARS = 8 * MAX_PHONEMES  # bounds the split of a string override


def stored_text(text: str) -> str:
    """The normalised text the service stores for ``text`` (raises ``G2PError`` as enrollment does)."""
    return " ".join(normalize(check_keyword_text(text).text))


def phoneme_tokens(value: str | list[str]) -> tuple[str, ...]:
    """An override as symbols; raises ``ValueError`` beyond :data:`MAX_PHONEMES`."""
    if isinstance(value, str):
        if len(value) > MAX_PHONEME_STRING_CHARS:
            raise ValueError(
                f"phonemes is {len(value)} characters; at most {MAX_PHONEMES} symbols "
                f"({MAX_PHONEME_STRING_CHARS} characters) are accepted"
            )
        tokens = tuple(value.split())
    else:
        tokens = tuple(value)
    if len(tokens) > MAX_PHONEMES:
        raise ValueError(f"phonemes has {len(tokens)} symbols; at most {MAX_PHONEMES} are accepted")
    return tokens


def finite_json(value: Any, where: str = "metadata") -> Any:
    """JSON has no NaN or infinity (Python's parser accepts them, PostgreSQL's JSON does not)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where} holds {value!r}, which is not a JSON number; use finite numbers or strings"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            finite_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            finite_json(v, f"{where}[{i}]")
    return value

"""Background windows for the background-negative loss: windows of a batch's length that hold no
keyword of the batch, and which of the batch's proxies each may be compared with.

Two sources, both from the feature cache (:mod:`.feature_cache`):

- *partials*: the cut rendition of a batch clip ("turn on the" of "turn on the lights"). It is a
  negative for its own phrase (the point: a stream must not fire on the first words) and for every
  other class, except classes whose words it may really contain ("turn on" is in "turn on the").
- *running speech*: a crop of a sequence of 3-5 other training clips, a negative for every class
  whose words it does not contain.

"Contains" is tested on pronunciations at word boundaries: ``(b,) + needle + (b,)`` must occur in
``(b,) + haystack + (b,)`` with ``b`` the word-boundary id, so "the" is not found inside "other".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Phones = tuple[int, ...]


def _tokens(ids: Phones, boundary: int) -> str:
    return " " + " ".join(str(i) for i in (boundary, *ids, boundary)) + " "


def contains_words(haystack: Phones, needle: Phones, boundary: int) -> bool:
    """Whether the words of ``needle`` occur, whole and in order, in ``haystack``.

    >>> b = 2
    >>> contains_words((5, 6, b, 7, 8, b, 9), (7, 8), b), contains_words((5, 6, b, 7, 8), (6, b, 7), b)
    (True, False)
    >>> contains_words((5, 6, b, 7, 8), (5, 6, b, 7, 8), b)
    True
    """
    return _tokens(needle, boundary) in _tokens(haystack, boundary)


def negative_mask(
    sources: Sequence[tuple[Phones, Phones | None]], classes: Sequence[Phones], boundary: int
) -> np.ndarray:
    """``[N, K]`` bool: window n may be scored as a negative against class k.

    ``sources[n] = (what the window's audio says, own class or None)``. A class the window may
    contain is not a negative, except the window's own class (a partial never holds all of it).

    >>> negative_mask([((5, 2, 6), (5, 2, 6, 2, 7)), ((8,), None)], [(5, 2, 6, 2, 7), (6,), (9,)], 2).tolist()
    [[True, False, True], [True, True, True]]
    """
    out = np.ones((len(sources), len(classes)), bool)
    for n, (said, own) in enumerate(sources):
        for k, cls in enumerate(classes):
            if cls != own and contains_words(said, cls, boundary):
                out[n, k] = False
    return out


def crop(feats: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``window``-frame crop (the whole array when it is shorter)."""
    if len(feats) <= window:
        return feats
    start = int(rng.integers(0, len(feats) - window + 1))
    return feats[start : start + window]

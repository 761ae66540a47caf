"""A large phrase bank for mining negatives: the phrases a window scores highest that it does not say.

The bank holds text proxies of at least 50,000 phrases (training targets, their sound-alikes and
1-4 word n-grams of the carrier text) in a FAISS inner-product index. Proxies move as the text
encoder trains, so the trainer re-encodes the bank every few hundred steps (:meth:`refresh`).

Example:
    >>> import numpy as np
    >>> bank = PhraseBank(["turn on the lights", "turn off the lights", "lights", "hello"])
    >>> e = np.eye(4, dtype=np.float32)
    >>> bank.refresh(lambda texts: e[: len(texts)])
    >>> q = np.array([[0.1, 0.9, 0.5, 0.2]], np.float32)
    >>> bank.mine(q, ["turn on the lights please"], ["turn on the lights"], k=2)
    [['turn off the lights', 'hello']]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import faiss
import numpy as np

from openkws.training.stream_training.labels import contains_phrase

NGRAM_MAX = 4


def carrier_ngrams(chunks: Iterable[str], limit: int, seed: int = 0) -> list[str]:
    """Distinct 1-4 word n-grams of the carrier text, in a seeded random order, at most ``limit``."""
    seen: set[str] = set()
    for c in chunks:
        w = c.split()
        for n in range(1, NGRAM_MAX + 1):
            for i in range(len(w) - n + 1):
                seen.add(" ".join(w[i : i + n]))
    out = sorted(seen)
    np.random.default_rng(seed).shuffle(out)
    return out[:limit]


class PhraseBank:
    def __init__(self, phrases: Sequence[str]) -> None:
        if not phrases:
            raise ValueError("a phrase bank needs at least one phrase")
        self.phrases = list(dict.fromkeys(phrases))
        self.index: faiss.IndexFlatIP | None = None

    def __len__(self) -> int:
        return len(self.phrases)

    def refresh(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        """Re-encode every phrase (``encode(texts) -> [n, D]`` unit vectors) and rebuild the index."""
        emb = np.ascontiguousarray(encode(self.phrases), dtype=np.float32)
        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        self.index = index

    def mine(
        self, windows: np.ndarray, texts: Sequence[str], own: Sequence[str], k: int, search: int = 64
    ) -> list[list[str]]:
        """For each window embedding, its ``k`` highest-scoring bank phrases that its stream's text
        ``texts[i]`` does not contain and that are not its own phrase ``own[i]``."""
        if self.index is None:
            raise RuntimeError("PhraseBank.mine before refresh(): the bank has no proxies yet")
        _, idx = self.index.search(np.ascontiguousarray(windows, dtype=np.float32), min(search, len(self)))
        out = []
        for row, text, mine in zip(idx, texts, own, strict=True):
            picked = []
            for j in row:
                p = self.phrases[int(j)]
                if j >= 0 and p != mine and not contains_phrase(text, p):
                    picked.append(p)
                    if len(picked) == k:
                        break
            out.append(picked)
        return out

"""Cohort normalisation (issue 21, row N): a window's score for a keyword, relative to how that same
window scores against random phrases of the keyword's length.

A window that looks like "any speech of about this length" scores high against many proxies; a
cohort turns the raw cosine ``s = w·p`` into ``z = (s - mean_c(w·q)) / std_c(w·q)`` over ``COHORT_SIZE``
proxies ``q`` of random phrases with the keyword's phone count (one cohort per phone count, so the
extra cost per window is one product with ``#distinct phone counts x COHORT_SIZE`` proxies, shared
by every keyword of that length). ``z`` is then scaled by a fixed affine map (:func:`squash`,
``z / Z_SCALE``), so calibrated thresholds land in the API's 0..1 range where raw cosines did, and
the calibration's exponential tail (fitted in score units) keeps its shape: a logistic squash was
tried first and made that fit extrapolate thresholds near 1 (docs/RESULTS.md, issue 21); the calibration bank is scored through the same function
(:class:`openkws.engine.calibration.Calibrator`), so a false-alarm target still means what it says.

The phrases (package data ``cohort_phrases.txt``, ``text<TAB>phonemes``) are random sequences of
frequent training words, never a held-out or evaluation word; ``tools/make_cohort_phrases.py``
writes them (the engine does not import training).

Example:
    >>> import numpy as np
    >>> c = Cohort({3: np.eye(4, dtype=np.float32)[:2], 5: np.eye(4, dtype=np.float32)[2:]})
    >>> c.bucket_of(4), c.bucket_of(9)  # nearest phone count with a cohort
    (3, 5)
    >>> w = np.array([[0.6, 0.0, 0.8, 0.0]], np.float32)
    >>> z = c.zscores(np.array([[0.9]], np.float32), w, np.array([5]))
    >>> round(float(z[0, 0]), 3)  # (0.9 - mean(0.8, 0.0)) / std(0.8, 0.0)
    1.25
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

from openkws.text.phonetics import phones

COHORT_FILE = "cohort_phrases.txt"
COHORT_SIZE = 200  # phrases per phone count
MAX_PHONES = 20  # longer keywords use the longest cohort
MIN_STD = 1e-3  # a degenerate cohort (identical proxies) must not divide by ~0
# z -> score = z / Z_SCALE. With the shipped model the 0.5 FA/h thresholds are z 3.2-5.2 (median
# 4.1 -> 0.59); the API's largest threshold (0.99) is z 7.4. Scores of strong hits may exceed 1.
Z_SCALE = 7.5


class CohortError(ValueError):
    """The cohort phrase list is missing or malformed."""


def squash(z: np.ndarray) -> np.ndarray:
    """Cohort z-scores -> detection scores (affine: keeps the calibration tail's shape)."""
    return np.asarray(np.asarray(z, np.float32) / Z_SCALE, np.float32)


def phone_count(phonemes: Sequence[str]) -> int:
    return len(phones(phonemes))


def load_phrases(path: Path | None = None) -> dict[int, list[tuple[str, ...]]]:
    """The shipped cohort phrases, as phoneme sequences (with word boundaries) by phone count."""
    text = (
        Path(path).read_text()
        if path is not None
        else files("openkws.engine").joinpath(COHORT_FILE).read_text()
    )
    out: dict[int, list[tuple[str, ...]]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise CohortError(f"{COHORT_FILE} line {i}: expected 'text<TAB>phonemes', got {line!r}")
        seq = tuple(parts[1].split())
        out.setdefault(min(phone_count(seq), MAX_PHONES), []).append(seq)
    if not out:
        raise CohortError(f"{COHORT_FILE} holds no phrases; run tools/make_cohort_phrases.py")
    return out


class Cohort:
    """Cohort proxies by phone count (L2-normalised, ``[n_phrases, D]`` each); immutable, shared."""

    def __init__(self, proxies: dict[int, np.ndarray]) -> None:
        if not proxies:
            raise CohortError("a cohort needs at least one phone count")
        sizes = {len(p) for p in proxies.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise CohortError(f"every phone count needs the same, non-zero number of proxies; got {sizes}")
        self.counts = np.array(sorted(proxies), np.int64)
        self.size = sizes.pop()
        self._stack = np.stack([np.asarray(proxies[int(n)], np.float32) for n in self.counts])  # [B, S, D]
        # [D, U*S] per set of buckets, gathered once: a keyword set's buckets rarely change, and
        # gathering on every frame would copy U*S*D floats per product (more than the product costs)
        self._gathered: dict[tuple[int, ...], np.ndarray] = {}

    @classmethod
    def build(cls, embed: Callable[[list[tuple[str, ...]]], np.ndarray], path: Path | None = None) -> Cohort:
        """Embed the shipped phrases with ``embed`` (phoneme sequences -> L2-normalised proxies [n, D])."""
        phrases = {n: v[:COHORT_SIZE] for n, v in load_phrases(path).items() if len(v) >= COHORT_SIZE}
        if not phrases:
            raise CohortError(
                f"no phone count has {COHORT_SIZE} cohort phrases; run tools/make_cohort_phrases.py"
            )
        order = sorted(phrases)
        emb = embed([seq for n in order for seq in phrases[n]])
        return cls({n: emb[i * COHORT_SIZE : (i + 1) * COHORT_SIZE] for i, n in enumerate(order)})

    def bucket_of(self, n_phones: int) -> int:
        """The phone count whose cohort a keyword of ``n_phones`` phones uses (nearest available)."""
        return int(self.counts[int(np.argmin(np.abs(self.counts - int(n_phones))))])

    def buckets_of(self, phonemes: Sequence[Sequence[str]]) -> np.ndarray:
        return np.array([self.bucket_of(phone_count(p)) for p in phonemes], np.int64)

    def stats(self, emb: np.ndarray, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cohort mean and std of each window [n, D] for each bucket [U]: two arrays [n, U]."""
        pos = np.searchsorted(self.counts, buckets)
        if np.any(pos >= len(self.counts)) or np.any(
            self.counts[np.minimum(pos, len(self.counts) - 1)] != buckets
        ):
            raise CohortError(
                f"phone counts {buckets.tolist()} are not all cohorts of {self.counts.tolist()}"
            )
        key = tuple(pos.tolist())
        cs = self._gathered.get(key)
        if cs is None:
            if len(self._gathered) > 64:
                self._gathered.clear()
            cs = np.ascontiguousarray(self._stack[pos].reshape(-1, self._stack.shape[-1]).T)  # [D, U*S]
            self._gathered[key] = cs
        sims = (np.asarray(emb, np.float32) @ cs).reshape(len(emb), len(pos), self.size)
        return sims.mean(axis=2), np.maximum(sims.std(axis=2), MIN_STD)

    def zscores(self, sims: np.ndarray, emb: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Raw cosines [n, K] of windows ``emb`` [n, D] with keywords of cohort ``buckets`` [K] -> z [n, K]."""
        uniq, inv = np.unique(buckets, return_inverse=True)
        mean, std = self.stats(emb, uniq)
        return np.asarray((sims - mean[:, inv]) / std[:, inv], np.float32)

    def normalize(self, sims: np.ndarray, emb: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Detection scores: :func:`squash` of :meth:`zscores`."""
        return squash(self.zscores(sims, emb, buckets))

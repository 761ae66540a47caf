"""Write the engine's cohort phrase list (``src/openkws/engine/cohort_phrases.txt``, package data).

Cohort normalisation (:mod:`openkws.engine.cohort`) scores every window against random phrases with
the keyword's phone count. The phrases are random 1-4 word sequences of frequent *training* words:
no held-out test word (``is_test_word``) and no word of an evaluation keyword, so the cohort never
holds a keyword that is measured. The engine must not import training, so the list is generated
here once and shipped as text: one ``text<TAB>phonemes`` line per phrase, ``PER_COUNT`` phrases
for each phone count 1..``MAX_PHONES``.

    python tools/make_cohort_phrases.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openkws.engine.cohort import COHORT_FILE, COHORT_SIZE, MAX_PHONES
from openkws.text.phonetics import phones
from openkws.training.data.keywords import evaluation_keywords
from openkws.training.data.vocab import frequent_words

WORDS = 8000  # frequent words to draw from
SEED = 21
OUT = Path(__file__).resolve().parents[1] / "src" / "openkws" / "engine" / COHORT_FILE


def main() -> None:
    banned = {w for k in evaluation_keywords() for w in k.split()}
    words = [w for w in frequent_words(WORDS) if w.split == "train" and w.text not in banned]
    rng = np.random.default_rng(SEED)
    by_count: dict[int, dict[str, tuple[str, ...]]] = {n: {} for n in range(1, MAX_PHONES + 1)}
    for _ in range(400_000):
        if all(len(v) >= COHORT_SIZE for v in by_count.values()):
            break
        picked = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(1, 5)))]
        text = " ".join(w.text for w in picked)
        seq: list[str] = []
        for w in picked:
            seq += (["|"] if seq else []) + list(w.phonemes)
        n = len(phones(seq))
        bucket = by_count.get(n)
        if bucket is not None and len(bucket) < COHORT_SIZE:
            bucket[text] = tuple(seq)
    full = [n for n in sorted(by_count) if len(by_count[n]) >= COHORT_SIZE]  # 1 phone: too few words
    lines = [f"{t}\t{' '.join(s)}" for n in full for t, s in sorted(by_count[n].items())]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT, {n: len(v) for n, v in by_count.items()})


if __name__ == "__main__":
    main()

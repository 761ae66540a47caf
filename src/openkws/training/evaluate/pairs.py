"""Evaluation clips and (clip, text) pairs: the ``path,text[,start,end]`` manifest, the clips' audio,
and LibriPhrase-style pairs from the one pair builder (:func:`openkws.training.data.pairs.build_pairs`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openkws.audio import decode_file
from openkws.constants import SAMPLE_RATE
from openkws.text import load_inventory
from openkws.text.tts import to_16k
from openkws.training.data.pairs import PairItem
from openkws.training.data.pairs import build_pairs as build_data_pairs

EVAL_PAD_S = 0.5  # silence added on both sides of an evaluation clip (a stream has audio around a keyword)


@dataclass(frozen=True)
class EvalClip:
    path: Path
    text: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Pair:
    clip: int  # index into the clip list
    text: str
    label: int  # 1 match, 0 mismatch
    kind: str  # "positive", "easy" or "hard"


def read_eval_manifest(path: Path, split: str | None = None) -> list[EvalClip]:
    """``path,text[,start,end]`` CSV (seconds); relative paths resolve against the manifest's folder.

    Extra columns are ignored; with ``split``, only rows whose ``split`` column equals it are kept
    (so the synthetic corpus manifest can be evaluated on its ``test`` split directly)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: manifest lacks columns {sorted(missing)}; expected path,text[,start,end]"
            )
        if split is not None and "split" not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no split column; drop --split")
        for row in reader:
            if split is not None and row["split"] != split:
                continue
            p = Path(row["path"])
            if not p.is_absolute():
                p = path.parent / p if (path.parent / p).exists() else Path.cwd() / p
            start = float(row["start"]) if row.get("start") not in (None, "") else None
            end = float(row["end"]) if row.get("end") not in (None, "") else None
            out.append(EvalClip(p, row["text"].strip(), start, end))
    return out


def make_pairs(
    texts: Sequence[str],
    phonemes: dict[str, Sequence[int]],
    seed: int = 0,
    candidates: Sequence[str] | None = None,
) -> list[Pair]:
    """Match / easy / hard pairs for clips with these texts (phonemes as inventory ids, for every
    text and candidate), from the data layer's builder (hard negatives at 1-2 phoneme edits, ranked
    by a vowel/consonant-weighted distance); negatives come from ``candidates`` (default: ``texts``)."""
    inv = load_inventory()
    phones = {t: tuple(inv.decode(list(phonemes[t]))) for t in {*texts, *(candidates or ())}}
    items = [PairItem(str(i), t, phones[t]) for i, t in enumerate(texts)]
    pool = [(t, phones[t]) for t in sorted(set(candidates or texts))]
    return [
        Pair(int(p.path), p.text, int(p.label), str(p.kind)) for p in build_data_pairs(items, pool, seed=seed)
    ]


def read_eval_clip(clip: EvalClip) -> tuple[int, np.ndarray]:
    """(sample rate, mono float32 samples) of a clip's segment, at the file's own rate."""
    decoded = decode_file(Path(clip.path).read_bytes(), max_seconds=float("inf"))
    rate, mono = decoded.sample_rate, decoded.samples.mean(axis=1, dtype=np.float32)
    s = int(round((clip.start or 0.0) * rate))
    e = int(round(clip.end * rate)) if clip.end is not None else len(mono)
    return rate, np.ascontiguousarray(mono[s:e])


def load_eval_audio(clip: EvalClip) -> np.ndarray:
    """A clip's segment as 16 kHz mono float32 (the samples the service's stream resampler gives)."""
    rate, samples = read_eval_clip(clip)
    return to_16k(samples, rate)


def pad_eval(wave: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    pad = int(EVAL_PAD_S * rate)
    return np.pad(np.asarray(wave, np.float32), (pad, pad))

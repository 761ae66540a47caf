"""Training clips: read a corpus manifest into :class:`Clip` s and pick the train / validation sets.

The CSV format belongs to :mod:`openkws.training.data.manifest`; this reader additionally accepts
evaluation manifests with only ``path,text[,phonemes,...]`` (the Asterisk set) and turns texts
into phoneme ids (the manifest's phonemes, else the shared G2P).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openkws.text import G2P, Pronunciation, load_inventory
from openkws.training.config import Config


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    phoneme_ids: tuple[int, ...]
    voice: str = ""
    engine: str = ""
    duration: float = 0.0
    split: str = "train"


def _phoneme_ids(
    text: str, phonemes: str | None, g2p: Callable[[str], Pronunciation] | None
) -> tuple[int, ...]:
    inv = load_inventory()
    if phonemes:
        ids = tuple(inv.encode(phonemes.replace(",", " ").split()))
        if ids:
            return ids
    if g2p is None:
        raise ValueError(f"text {text!r} has no usable phonemes and no G2P was given")
    return tuple(g2p(text).ids)


def read_manifest(path: Path, splits: Sequence[str] | None = None) -> list[Clip]:
    """Read a ``path,text[,phonemes,voice,engine,duration,split]`` CSV; relative paths are resolved
    against the manifest's folder, then the working directory."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; build it with `openkws data synth`")
    g2p: G2P | None = None
    clips: list[Clip] = []
    cache: dict[tuple[str, str], tuple[int, ...]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: manifest lacks columns {sorted(missing)}; expected path,text[,...]")
        for row in reader:
            split = (row.get("split") or "train").strip()
            if splits is not None and split not in splits:
                continue
            p = Path(row["path"])
            if not p.is_absolute():
                p = path.parent / p if (path.parent / p).exists() else Path.cwd() / p
            text = row["text"].strip()
            key = (text, row.get("phonemes") or "")
            if key not in cache:
                if not row.get("phonemes") and g2p is None:
                    g2p = G2P()
                cache[key] = _phoneme_ids(text, row.get("phonemes"), g2p)
            clips.append(
                Clip(
                    p,
                    text,
                    cache[key],
                    row.get("voice", ""),
                    row.get("engine", ""),
                    float(row.get("duration") or 0.0),
                    split,
                )
            )
    return clips


def limit_clips_per_word(clips: Sequence[Clip], n: int, seed: int = 0) -> list[Clip]:
    """At most ``n`` clips per text, distinct voices first, chosen deterministically (by seed)."""
    by_word: dict[str, list[Clip]] = {}
    for c in clips:
        by_word.setdefault(c.text, []).append(c)
    keep: set[int] = set()
    for group in by_word.values():
        order = sorted(group, key=lambda c: hashlib.sha1(f"{seed}|{c.path}".encode()).hexdigest())
        chosen: list[Clip] = []
        voices: set[str] = set()
        for c in order:  # first pass: one clip per voice
            if len(chosen) < n and c.voice not in voices:
                chosen.append(c)
                voices.add(c.voice)
        for c in order:
            if len(chosen) < n and c not in chosen:
                chosen.append(c)
        keep.update(id(c) for c in chosen)
    return [c for c in clips if id(c) in keep]


def select_clips(
    manifest: Path,
    max_clips_per_word: int | None,
    max_train_clips: int | None,
    seed: int = 0,
    val_words: int = 0,
    max_val_clips: int | None = None,
) -> tuple[list[Clip], list[Clip]]:
    """(train, validation) clips of a corpus manifest after the config's subsampling.

    Validation = the ``dev`` split (seen words, held-out voices) plus every clip of ``val_words``
    train texts withheld from training (unseen words), subsampled to ``max_val_clips``. Training
    and the feature cache call this alike, so they agree on the clips (and the cache key). Train
    clips keep the manifest's order (the corpus plan's blocks of texts), so a prefix of them is a
    set of whole classes: the feature cache relies on that to serve its finished shards early.
    """
    clips = read_manifest(Path(manifest), splits=("train", "dev"))
    train = [c for c in clips if c.split == "train"]
    dev = [c for c in clips if c.split == "dev"]
    if val_words > 0:
        texts = sorted(
            {c.text for c in train}, key=lambda t: hashlib.sha1(f"{seed}|{t}".encode()).hexdigest()
        )
        held = set(texts[: min(val_words, len(texts) // 5)])
        dev = dev + [c for c in train if c.text in held]
        train = [c for c in train if c.text not in held]
    if max_val_clips is not None and len(dev) > max_val_clips:
        rng = np.random.default_rng(seed + 1)
        dev = [dev[i] for i in sorted(rng.choice(len(dev), max_val_clips, replace=False))]
    if max_clips_per_word is not None:
        train = limit_clips_per_word(train, max_clips_per_word, seed)
    if max_train_clips is not None and len(train) > max_train_clips:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in sorted(rng.choice(len(train), max_train_clips, replace=False))]
    return train, dev


def config_clips(cfg: Config) -> tuple[list[Clip], list[Clip]]:
    """:func:`select_clips` with a training config's data settings."""
    dc = cfg.data
    return select_clips(
        Path(dc.manifest),
        dc.max_clips_per_word,
        dc.max_train_clips,
        cfg.train.seed,
        dc.val_words,
        dc.val_pairs // 3,
    )

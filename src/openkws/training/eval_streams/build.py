"""Build (once) and cache the positive and negative streams of the protocol.

Everything is written under ``<cache>/<key>/`` where ``key`` hashes the manifest, the conditions, the
negative sources and the seed, so a rerun with the same inputs reads WAVs and ``streams.json``
instead of synthesizing, convolving and mixing again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.training.data.audio import write_wav
from openkws.training.data.augment import rir_bank
from openkws.training.eval_streams.conditions import CONDITIONS, RT60, Backgrounds, Placed, build_stream
from openkws.training.eval_streams.sources import (
    EVAL_TTS_VOICES,
    Segment,
    concat,
    eval_sentences,
    folder_negatives,
    music_tracks,
    read_audio,
    recorded_negatives,
    tts_segments,
    words_of,
)

log = logging.getLogger("openkws.eval_streams")
DEFAULT_NEGATIVES = ("recorded", "tts", "music")
NEGATIVE_STREAM_S = 300.0
CLIPS_PER_STREAM = 40
BABBLE_POOL_S = 240.0


@dataclass
class Stream:
    """One WAV of the protocol; positives list placed clips, negatives list spans with their text."""

    name: str
    condition: str  # a condition name, or "negative"
    path: str
    duration_s: float
    placed: list[Placed] = field(default_factory=list)
    spans: list[tuple[float, float, str, str]] = field(default_factory=list)  # start, end, kind, text


@dataclass(frozen=True)
class Clip:
    row: int
    path: Path
    text: str


def read_manifest(path: Path) -> list[Clip]:
    """``path,text`` CSV (paths relative to its folder); the text is normalised to lowercase words."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found (build the default with `openkws data asterisk`)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "text"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with header columns 'path' and 'text'")
    clips = []
    for i, r in enumerate(rows):
        text = " ".join(words_of(r["text"]))
        if not text:
            raise ValueError(f"{path} row {i + 2}: empty keyword text")
        clips.append(Clip(i, (path.parent / r["path"]).resolve(), text))
    return clips


def cache_key(
    manifest: Path, conditions: Sequence[str], negatives: Sequence[str], tts_minutes: float, seed: int
) -> str:
    h = hashlib.sha256(Path(manifest).read_bytes())
    h.update(json.dumps([list(conditions), list(negatives), tts_minutes, seed, 2]).encode())
    return h.hexdigest()[:16]


def _write(path: Path, audio: np.ndarray) -> None:

    write_wav(path, audio)


def _negative_segments(sources: Sequence[str], tts_minutes: float, seed: int) -> list[Segment]:
    segs: list[Segment] = []
    for src in sources:
        if src == "recorded":
            segs += recorded_negatives()
        elif src == "tts":
            segs += tts_segments(eval_sentences(1), tts_minutes * 60, EVAL_TTS_VOICES, seed + 7)
        elif src == "music":
            segs += music_tracks()
        elif Path(src).is_dir():
            segs += folder_negatives(Path(src))
        else:
            raise ValueError(f"negative source {src!r} is neither 'recorded', 'tts', 'music' nor a folder")
    return segs


def _chunks(segs: list[Segment], seconds: float) -> list[list[Segment]]:
    """Group segments into streams of about ``seconds``; long segments (music tracks) are split."""
    out: list[list[Segment]] = [[]]
    total = 0
    step = int(seconds * SAMPLE_RATE)
    for s in segs:
        pieces = (
            [s]
            if len(s.audio) <= step
            else [
                Segment(f"{s.name}#{k}", s.kind, s.audio[k : k + step], s.text)
                for k in range(0, len(s.audio), step)
            ]
        )
        for p in pieces:
            if total + len(p.audio) > step and out[-1]:
                out.append([])
                total = 0
            out[-1].append(p)
            total += len(p.audio)
    return [c for c in out if c]


def build(
    manifest: Path,
    cache: Path,
    conditions: Sequence[str] = CONDITIONS,
    negatives: Sequence[str] = DEFAULT_NEGATIVES,
    tts_minutes: float = 30.0,
    seed: int = 0,
    clips_per_stream: int = CLIPS_PER_STREAM,
) -> tuple[list[Clip], list[Stream]]:
    """Streams for ``manifest`` (positives per condition) and ``negatives``; cached under ``cache``."""
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown condition(s) {bad}; choose from {list(CONDITIONS)}")
    clips = read_manifest(manifest)
    root = Path(cache) / cache_key(manifest, conditions, negatives, tts_minutes, seed)
    index = root / "streams.json"
    if index.is_file():
        raw = json.loads(index.read_text())
        streams = [
            Stream(
                **{**s, "placed": [Placed(**p) for p in s["placed"]], "spans": [tuple(x) for x in s["spans"]]}
            )
            for s in raw
        ]
        return clips, streams

    rng = np.random.default_rng(seed)
    streams: list[Stream] = []
    need_babble = "babble" in conditions
    pool = (
        tts_segments(eval_sentences(1)[::-1], BABBLE_POOL_S, EVAL_TTS_VOICES, seed + 3, "babble")
        if need_babble
        else []
    )

    rirs = (
        rir_bank(40, seed=seed + 11, cache_dir=root / "rirs", rt60_range=RT60)
        if "reverb" in conditions
        else []
    )
    bg = Backgrounds(music_tracks() if "music" in conditions else [], pool, rirs)
    waves = {c.row: read_audio(c.path) for c in clips}
    jobs = [(cond, k) for cond in conditions for k in range(0, len(clips), clips_per_stream)]
    for cond, k in tqdm(jobs, desc="positive streams", unit="stream"):
        part = [(c.row, c.text, waves[c.row]) for c in clips[k : k + clips_per_stream]]
        audio, placed = build_stream(cond, part, bg, rng)
        name = f"{cond}_{k // clips_per_stream:03d}"
        _write(root / "audio" / f"{name}.wav", audio)
        streams.append(
            Stream(name, cond, str(root / "audio" / f"{name}.wav"), len(audio) / SAMPLE_RATE, placed)
        )
    log.info("building negatives from %s", list(negatives))
    segs = _negative_segments(negatives, tts_minutes, seed)
    for k, chunk in enumerate(tqdm(_chunks(segs, NEGATIVE_STREAM_S), desc="negative streams", unit="stream")):
        audio, spans = concat(chunk, rng)
        floor = rng.standard_normal(len(audio)).astype(np.float32) * 5e-4  # the quiet floor
        name = f"negative_{k:03d}"
        _write(root / "audio" / f"{name}.wav", audio + floor)
        streams.append(
            Stream(
                name,
                "negative",
                str(root / "audio" / f"{name}.wav"),
                len(audio) / SAMPLE_RATE,
                spans=[(a / SAMPLE_RATE, b / SAMPLE_RATE, s.kind, s.text) for a, b, s in spans],
            )
        )
    index.write_text(json.dumps([asdict(s) for s in streams]))
    return clips, streams

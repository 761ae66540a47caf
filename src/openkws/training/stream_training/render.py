"""Render the stream training set and cache its features, shard by shard (resumable).

A shard is ``<out>/shard_NNNN.npz``: ``features`` (all streams' frames, float16, concatenated),
``offsets`` [n+1], ``phrase_end`` [n] (the spoken phrase's last sample), ``samples`` [n], and
``meta`` (JSON: one :class:`~.phrases.StreamItem` per stream, as a dict). Features are the
frozen front-end's, computed on the whole stream from its first sample, exactly as the engine
computes them live, so window ``[s, t]`` here is the window the engine scores at frame ``t``.

Augmentation per stream (rooms and speakers are the lever that moved real speech last time):
a new speaker (Praat) with probability 0.7, then the room/channel chain of the ``robust`` recipe
(noise, simulated rooms, telephone and band limits), timing kept.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.training.data.audio import trim_silence
from openkws.training.data.speaker import SpeakerRanges, random_speaker
from openkws.training.data.tts import synthesize
from openkws.training.loader.renditions import make_augmenter
from openkws.training.stream_training.phrases import StreamItem

SHARD = 256
LEAD_S = (0.3, 1.2)  # silence or room tone before the first word
GAP_S = (0.05, 0.35)  # a pause after the spoken phrase (with probability P_GAP)...
RUN_ON_S = (0.0, 0.04)  # ...else the phrase runs on into the right carrier
P_GAP = 0.35
PAUSE_S = (0.1, 0.5)  # pauses where no phrase ends
P_SPLIT_LEFT = 0.4
P_SPLIT_RIGHT = 0.5
TAIL_S = (0.2, 0.8)
TARGET_RMS = 0.05
P_SPEAKER = 0.7
ROOM = {
    "p_noise": 0.7,
    "noise_snr_db": [0.0, 20.0],
    "p_reverb": 0.4,
    "p_babble": 0.0,
    "p_telephone": 0.1,
    "p_band_limit": 0.15,
}

_W: dict[str, Any] = {}


def _init(frontend: str, rir_dir: str | None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from openkws.training.nets.frontend import feature_extractor

    _W["fx"] = feature_extractor(frontend, threads=1)
    _W["aug"] = make_augmenter(None, Path(rir_dir) if rir_dir else None, ROOM)
    _W["speaker"] = SpeakerRanges()


def _speech(text: str, voice: str, seed: int) -> np.ndarray:
    return trim_silence(synthesize(text, voice, seed), lead_ms=0.0, tail_ms=0.0)


def _pause(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    return np.zeros(int(rng.uniform(lo, hi) * SAMPLE_RATE), np.float32)


def render_stream(item: StreamItem, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The stream's clean audio and the sample where its spoken phrase ends.

    A pause after the phrase must not be the cue for "keyword here" (the first stream set always
    had one, and the fine-tune learned to fire on any speech-then-silence window): most phrases run
    on into the right carrier with no pause, and pauses are put where no phrase ends instead
    (between the left carrier and the phrase, inside the right carrier)."""
    parts = [_pause(rng, *LEAD_S)]
    if item.left and rng.random() < P_SPLIT_LEFT:
        parts += [_speech(item.left, item.voice, item.seed + 2), _pause(rng, *PAUSE_S)]
        head = _speech(item.spoken, item.voice, item.seed)
    else:
        head = _speech(f"{item.left} {item.spoken}".strip(), item.voice, item.seed)
    parts.append(head)
    end = sum(len(p) for p in parts)
    parts.append(_pause(rng, *(GAP_S if rng.random() < P_GAP else RUN_ON_S)))
    if item.right:
        words = item.right.split()
        cut = (
            int(rng.integers(1, len(words)))
            if len(words) > 1 and rng.random() < P_SPLIT_RIGHT
            else len(words)
        )
        parts.append(_speech(" ".join(words[:cut]), item.voice, item.seed + 1))
        if cut < len(words):
            parts += [_pause(rng, *PAUSE_S), _speech(" ".join(words[cut:]), item.voice, item.seed + 3)]
    parts.append(_pause(rng, *TAIL_S))
    wave = np.concatenate(parts).astype(np.float32)
    return wave * (TARGET_RMS / (np.sqrt(np.mean(head**2)) + 1e-9)), end


def _work(item: StreamItem) -> tuple[int, np.ndarray | None, int, int, str]:
    rng = np.random.default_rng(item.seed)
    try:
        wave, end = render_stream(item, rng)
        if rng.random() < P_SPEAKER:
            # tempo changes move the phrase end: keep the ratio
            changed = random_speaker(wave, _W["speaker"], rng)
            end = int(round(end * len(changed) / len(wave)))
            wave = changed
        wave = _W["aug"](wave, rng).astype(np.float32)
        return item.idx, _W["fx"].features(wave).astype(np.float16), end, len(wave), ""
    except Exception as e:  # one bad rendition must not kill a shard: logged, dropped
        return item.idx, None, 0, 0, f"{type(e).__name__}: {e}"


def _shards(items: Sequence[StreamItem]) -> Iterator[tuple[int, list[StreamItem]]]:
    for k in range(0, len(items), SHARD):
        yield k // SHARD, list(items[k : k + SHARD])


def shard_path(out: Path, k: int) -> Path:
    return out / f"shard_{k:04d}.npz"


def build(
    items: Sequence[StreamItem],
    out: Path,
    workers: int = 2,
    frontend: str = "speech_embedding",
    rir_dir: str | None = "data/rirs",
) -> int:
    """Render and featurise every shard not yet on disk; returns the streams written."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [(k, s) for k, s in _shards(items) if not shard_path(out, k).exists()]
    written = 0
    if rir_dir:
        from openkws.training.data.augment import rir_bank
        from openkws.training.loader.renditions import RIR_COUNT, RIR_SEED

        rir_bank(RIR_COUNT, RIR_SEED, rir_dir)  # built once here, not by every worker at once
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(frontend, rir_dir)) as pool:
        bar = tqdm(total=sum(len(s) for _, s in todo), unit="stream", desc="stream set", smoothing=0.05)
        errors = 0
        for k, shard in todo:
            rows = sorted(pool.imap_unordered(_work, shard, chunksize=4), key=lambda r: r[0])
            by_idx = {it.idx: it for it in shard}
            keep = [r for r in rows if r[1] is not None]
            errors += len(rows) - len(keep)
            for r in rows:
                if r[1] is None:
                    tqdm.write(f"stream {r[0]} dropped: {r[4]}")
            feats = [r[1] for r in keep if r[1] is not None]  # all of keep: the filter narrows the type
            offsets = np.cumsum([0] + [len(f) for f in feats])
            tmp = shard_path(out, k).with_suffix(".tmp.npz")
            np.savez(
                tmp,
                features=np.concatenate(feats) if feats else np.zeros((0, 96), np.float16),
                offsets=offsets.astype(np.int64),
                phrase_end=np.array([r[2] for r in keep], np.int64),
                samples=np.array([r[3] for r in keep], np.int64),
                meta=np.array(json.dumps([asdict(by_idx[r[0]]) for r in keep])),
            )
            tmp.rename(shard_path(out, k))  # a shard is there whole or not at all
            written += len(keep)
            bar.update(len(shard))
            bar.set_postfix(shard=k, dropped=errors)
        bar.close()
    return written


def load_shards(out: Path) -> list[dict[str, Any]]:
    """Every finished shard as arrays plus its decoded ``items`` list."""
    shards = []
    for p in sorted(out.glob("shard_*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        with np.load(p) as z:
            d = {k: z[k] for k in ("features", "offsets", "phrase_end", "samples")}
            d["items"] = [StreamItem(**m) for m in json.loads(str(z["meta"]))]
        shards.append(d)
    return shards

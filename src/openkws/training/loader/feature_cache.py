"""Feature cache: front-end features of every training rendition, computed once, in shards.

The speech-embedding front-end costs ~1.7 ms per 80 ms frame, more than a training step per clip,
so renditions are featurised ahead of training: per clip the clean one plus ``variants`` augmented
ones (new speaker, room, channel: :mod:`.renditions`), optionally one *partial* rendition (a phrase
cut inside its speech: a background negative), and per shard ``background_per_shard`` sequences of
running speech (3-5 other clips of the shard spoken in a row by one changed speaker, through a
room). Training then adds cheap feature-level augmentation (window position, frame masking, a
random variant).

Layout: ``<cache_root>/<frontend>-<settings key>/shard_<i>_<clips digest>.npz``. The directory key
hashes every setting that changes features; each shard's name hashes its own clips. Shard ``i``
holds clips ``[512 i, 512 (i + 1))`` of the clip list, so a longer list made by appending clips
reuses every shard of a shorter one, and :func:`ready_prefix` lets training start on the finished
shards while the rest are still being built. Shards are written atomically (an interrupted build
resumes).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import speech_span
from openkws.text import load_inventory
from openkws.training.config import Config
from openkws.training.data.audio import read_wav
from openkws.training.data.speaker import SpeakerRanges
from openkws.training.loader.clips import Clip
from openkws.training.loader.renditions import (
    RenditionSettings,
    augmented_padded,
    change_voice,
    make_augmenter,
    pad_with_context,
    partial_cut,
    phrase_is_partial_source,
)
from openkws.training.nets.frontend import feature_extractor

if TYPE_CHECKING:
    from openkws.engine.encoders import FeatureExtractor
    from openkws.engine.runtime import Device

CACHE_VERSION = 4
SHARD_CLIPS = 512
BACKGROUND_CLIPS = (3, 5)  # clips per running-speech sequence
BACKGROUND_GAP_S = (0.03, 0.3)  # pause between them


@dataclass(frozen=True)
class CacheSpec:
    """Everything that changes the cached features (the cache directory's key)."""

    frontend: str
    context_s: float
    variants: int
    settings: RenditionSettings
    partials: bool = False
    background_per_shard: int = 0

    def key(self) -> str:
        raw = json.dumps(
            [
                CACHE_VERSION,
                self.frontend,
                round(self.context_s, 4),
                self.variants,
                asdict(self.settings),
                self.partials,
                self.background_per_shard,
            ],
            sort_keys=True,
        )
        return f"{self.frontend}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


@dataclass
class FeatureStore:
    """Cached features of one clip list: ``feats[i][v]`` is clip i, variant v, [T, F] float16;
    ``spans[i][v]`` the keyword's (start, end) sample in that variant's padded audio;
    ``partials[i]`` the cut rendition of clip i or None; ``background[j]`` a running-speech
    sequence and ``background_ids[j]`` the phoneme ids of what it says (words joined by the
    boundary id)."""

    clips: list[Clip]
    feats: list[list[np.ndarray]]
    spans: list[np.ndarray]  # per clip: [variants, 2]
    context_samples: int
    frontend: str
    partials: list[np.ndarray | None] = field(default_factory=list)
    background: list[np.ndarray] = field(default_factory=list)
    background_ids: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def variants(self) -> int:
        return len(self.feats[0]) if self.feats else 0

    def clean_spans(self) -> list[tuple[int, int]]:
        return [(int(sp[0, 0]), int(sp[0, 1])) for sp in self.spans]


def manifest_digest(clips: Sequence[Clip]) -> str:
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.path}|{c.text}|{c.voice}|{c.split}\n".encode())
    return h.hexdigest()[:16]


def shard_path(out_dir: Path, clips: Sequence[Clip], i: int) -> Path:
    part = clips[i * SHARD_CLIPS : (i + 1) * SHARD_CLIPS]
    return out_dir / f"shard_{i:05d}_{manifest_digest(part)[:10]}.npz"


# --------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _worker_init(
    spec: CacheSpec, speech_paths: list[str] | None, rir_dir: str | None, device: Device = "cpu"
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    augmenting = spec.variants > 0 or spec.partials or spec.background_per_shard > 0
    aug = (
        make_augmenter(speech_paths, Path(rir_dir) if rir_dir else None, spec.settings.room)
        if augmenting
        else None
    )
    _WORKER.update(fx=feature_extractor(spec.frontend, threads=1, device=device), spec=spec, aug=aug)


ClipJob = tuple[Literal["clip"], int, str, str | None, bool]  # ("clip", index, path, other path, partial?)
BackgroundJob = tuple[Literal["bg"], int, list[str]]  # ("bg", seed, paths)


def _features(audio: np.ndarray) -> np.ndarray:
    fx: FeatureExtractor = _WORKER["fx"]
    return fx.features(audio).astype(np.float16)


def _featurise_clip(job: ClipJob) -> tuple[list[np.ndarray], list[tuple[int, int]], np.ndarray | None]:
    _, idx, path, other_path, partial = job
    spec: CacheSpec = _WORKER["spec"]
    ctx, aug = spec.settings.context_samples, _WORKER["aug"]
    wave = read_wav(path)
    s, e = speech_span(wave)
    out, spans = [_features(pad_with_context(wave, ctx))], [(s + ctx, e + ctx)]
    rng = np.random.default_rng(idx)
    other = read_wav(other_path) if other_path else None
    for _ in range(spec.variants):
        audio, span = augmented_padded(wave, ctx, rng, aug, other, spec.settings.speaker)
        out.append(_features(audio))
        spans.append(span)
    part = None
    if partial:
        cut = change_voice(partial_cut(wave, rng), rng, spec.settings.speaker)
        padded = pad_with_context(cut, ctx)
        part = _features(aug(padded, rng) if aug is not None else padded)
    return out, spans, part


def _featurise_background(job: BackgroundJob) -> np.ndarray:
    _, seed, paths = job
    spec: CacheSpec = _WORKER["spec"]
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    for p in paths:
        pieces += [read_wav(p), np.zeros(int(rng.uniform(*BACKGROUND_GAP_S) * SAMPLE_RATE), np.float32)]
    speech = change_voice(np.concatenate(pieces), rng, spec.settings.speaker)
    padded = pad_with_context(speech, spec.settings.context_samples)
    aug = _WORKER["aug"]
    return _features(aug(padded, rng) if aug is not None else padded)


def _run(job: ClipJob | BackgroundJob) -> tuple[str, Any]:
    if job[0] == "clip":
        return "clip", _featurise_clip(job)
    return "bg", _featurise_background(job)


# --------------------------------------------------------------------------------------------- build
def _background_groups(clips: Sequence[Clip], lo: int, hi: int, n: int, seed: int) -> list[list[int]]:
    """``n`` groups of 3-5 clip indices from ``[lo, hi)`` with distinct texts, seeded per shard."""
    rng = np.random.default_rng([seed, lo, 77])
    groups = []
    for _ in range(n):
        k = int(rng.integers(BACKGROUND_CLIPS[0], BACKGROUND_CLIPS[1] + 1))
        picked: list[int] = []
        for j in rng.permutation(np.arange(lo, hi)):
            if all(clips[int(j)].text != clips[q].text for q in picked):
                picked.append(int(j))
            if len(picked) == k:
                break
        groups.append(picked)
    return groups


def _shard_jobs(
    clips: Sequence[Clip], spec: CacheSpec, i: int, others: np.ndarray, seed: int
) -> list[ClipJob | BackgroundJob]:
    lo, hi = i * SHARD_CLIPS, min(len(clips), (i + 1) * SHARD_CLIPS)
    boundary = load_inventory().encode(["|"])[0]
    jobs: list[ClipJob | BackgroundJob] = [
        (
            "clip",
            j,
            str(clips[j].path),
            str(clips[int(others[j])].path) if spec.variants else None,
            spec.partials and phrase_is_partial_source(clips[j].phoneme_ids, boundary),
        )
        for j in range(lo, hi)
    ]
    for b, group in enumerate(_background_groups(clips, lo, hi, spec.background_per_shard, seed)):
        jobs.append(("bg", seed * 1_000_003 + lo * 101 + b, [str(clips[j].path) for j in group]))
    return jobs


def _sequence_ids(clips: Sequence[Clip], group: list[int]) -> tuple[int, ...]:
    boundary = load_inventory().encode(["|"])[0]
    out: list[int] = []
    for j in group:
        out += ([boundary] if out else []) + list(clips[j].phoneme_ids)
    return tuple(out)


def build_feature_cache(
    clips: Sequence[Clip],
    spec: CacheSpec,
    cache_root: Path,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
    device: Device = "cpu",
) -> FeatureStore:
    """Compute the missing shards of ``clips`` (then load them all); the front-end runs on
    ``device`` (``auto``/``cuda``: onnxruntime's CUDA provider; augmentation stays on the CPU).

    Augmentation uses babble from these clips and a bank of simulated rooms cached next to the cache
    root (``<cache_root>/../rirs``), built once in this process before any worker starts.
    """
    clips = list(clips)
    out_dir = Path(cache_root) / spec.key()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"spec": asdict(spec), "version": CACHE_VERSION, "shard_clips": SHARD_CLIPS}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    n_shards = math.ceil(len(clips) / SHARD_CLIPS)
    todo = [i for i in range(n_shards) if not shard_path(out_dir, clips, i).is_file()]
    if todo:
        augmenting = spec.variants > 0 or spec.partials or spec.background_per_shard > 0
        others = np.random.default_rng(seed).integers(0, len(clips), len(clips))
        speech_paths = [str(c.path) for c in clips] if augmenting else None
        rir_dir = str(Path(cache_root).parent / "rirs") if augmenting else None
        if rir_dir is not None:
            make_augmenter(None, Path(rir_dir), spec.settings.room)  # simulate + cache the rooms once, here
        init_args = (spec, speech_paths, rir_dir, device)
        pool = mp.get_context("spawn").Pool(workers, _worker_init, init_args) if workers > 1 else None
        if pool is None:
            _worker_init(*init_args)
        bar = tqdm(
            total=len(todo) * SHARD_CLIPS,
            desc=f"features[{spec.frontend}] x{1 + spec.variants}",
            unit="clip",
            disable=not progress,
        )
        try:
            for i in todo:
                jobs = _shard_jobs(clips, spec, i, others, seed)
                results: Iterator[tuple[str, Any]] = (
                    pool.imap(_run, jobs, chunksize=4) if pool else map(_run, jobs)
                )
                shard: dict[str, list[Any]] = {"clip": [], "bg": []}
                for kind, r in results:
                    shard[kind].append(r)
                    bar.update(kind == "clip")
                lo = i * SHARD_CLIPS
                groups = _background_groups(
                    clips, lo, min(len(clips), lo + SHARD_CLIPS), spec.background_per_shard, seed
                )
                _write_shard(
                    shard_path(out_dir, clips, i),
                    shard["clip"],
                    shard["bg"],
                    [_sequence_ids(clips, g) for g in groups],
                )
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
    return load_store(out_dir, clips, n_shards, spec)


def ready_prefix(clips: Sequence[Clip], spec: CacheSpec, cache_root: Path) -> int:
    """How many leading clips of ``clips`` the finished shards cover (whole shards only)."""
    out_dir = Path(cache_root) / spec.key()
    n = 0
    for i in range(math.ceil(len(clips) / SHARD_CLIPS)):
        if not shard_path(out_dir, clips, i).is_file():
            break
        n = min(len(clips), (i + 1) * SHARD_CLIPS)
    return n


def _concat(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    return (np.concatenate(arrays) if arrays else np.zeros((0, 1), np.float16)), offsets


def _write_shard(
    path: Path, clips: list[Any], background: list[np.ndarray], background_ids: list[tuple[int, ...]]
) -> None:
    flat = [v for feats, _, _ in clips for v in feats]
    feats, offsets = _concat(flat)
    has_part = np.array([p is not None for _, _, p in clips], bool)
    pfeats, poffsets = _concat([p for _, _, p in clips if p is not None])
    bfeats, boffsets = _concat(background)
    ids, ioffsets = _concat([np.array(t, np.int64) for t in background_ids])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        feats=feats,
        offsets=offsets,
        per_clip=np.array(len(clips[0][0]) if clips else 0),
        spans=np.array([sp for _, spans, _ in clips for sp in spans], np.int64).reshape(-1, 2),
        has_partial=has_part,
        pfeats=pfeats,
        poffsets=poffsets,
        bfeats=bfeats,
        boffsets=boffsets,
        bids=ids,
        bid_offsets=ioffsets,
    )
    os.replace(tmp, path)


def _split(a: np.ndarray, off: np.ndarray) -> list[np.ndarray]:
    return [a[off[k] : off[k + 1]] for k in range(len(off) - 1)]


def load_store(out_dir: Path, clips: list[Clip], n_shards: int, spec: CacheSpec) -> FeatureStore:
    store = FeatureStore(
        clips[: min(len(clips), n_shards * SHARD_CLIPS)], [], [], spec.settings.context_samples, spec.frontend
    )
    for i in range(n_shards):
        with np.load(shard_path(out_dir, clips, i)) as z:
            views, per, sp = _split(z["feats"], z["offsets"]), int(z["per_clip"]), z["spans"]
            store.feats.extend(views[k : k + per] for k in range(0, len(views), per))
            store.spans.extend(sp[k : k + per] for k in range(0, len(sp), per))
            parts = iter(_split(z["pfeats"], z["poffsets"]))
            store.partials.extend(next(parts) if h else None for h in z["has_partial"])
            store.background.extend(_split(z["bfeats"], z["boffsets"]))
            store.background_ids.extend(tuple(int(x) for x in a) for a in _split(z["bids"], z["bid_offsets"]))
    if len(store.feats) != len(store.clips):
        raise RuntimeError(
            f"feature cache {out_dir} holds {len(store.feats)} clips, expected {len(store.clips)}; delete it"
        )
    return store


def config_spec(cfg: Config, variants: int, background: bool = True) -> CacheSpec:
    """The cache spec a training config asks for (``background=False``: no partials or running
    speech, as for the validation set)."""
    dc = cfg.data
    sp = dc.speaker_augment
    speaker = SpeakerRanges(**sp.model_dump()) if sp is not None else None
    settings = RenditionSettings(
        round(dc.context_seconds * SAMPLE_RATE), speaker, dc.room_augment.overrides()
    )
    return CacheSpec(
        cfg.model.frontend,
        dc.context_seconds,
        variants,
        settings,
        dc.partials and background,
        dc.background_per_shard if background else 0,
    )

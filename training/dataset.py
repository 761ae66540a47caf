"""Training data: manifest -> (cached) front-end features -> K keywords x M utterances window batches.

Front-end features are computed with the service's own :class:`openkws.engine.features.FeatureExtractor`
over the bundled ONNX graphs, so training sees exactly the features the service computes.

Augmentation trade-off (why the two front-ends differ):

* ``speech_embedding`` costs ~1.7 ms per 80 ms embedding frame, i.e. ~25 ms per 2 s clip. Featurising
  augmented audio on the fly would cost more than the training step itself on 2 cores, so the cache
  holds ``1 + augment_variants`` versions of every clip: the clean one and ``augment_variants`` copies
  passed through the data layer's waveform ``Augmenter`` (noise, reverberation, gain...) and, with
  probability 1/2, a quieter neighbouring word in the context, *before* featurising. Training then
  adds cheap feature-level augmentation on the fly: a random window position around the keyword
  (random context), frame masking, and picking a random cached variant. The price: only a fixed number
  of waveform augmentations per clip are ever seen.
* ``logmel`` costs ~1 ms per 2 s clip, so the loader keeps the (int16) waveforms in memory and augments
  every draw on the fly before computing the mel; every epoch sees fresh augmentations.

Every clip is padded with ``context_seconds`` of silence on both sides before featurising (augmentation
then fills it with noise), so a training window can hold the keyword anywhere, with context, like a
window cut from a stream. The window length comes from :func:`openkws.training.models.windows.window_for_duration`
applied to the detected speech span of the clip.

Cache layout: ``<cache_dir>/<frontend>-<key>/`` with ``meta.json`` and one ``<split>_<shard>.npz`` per
``SHARD_CLIPS`` clips (``feats`` float16 [sum T, F], ``offsets``, ``span`` (keyword start/end sample in
padded audio)). ``key`` hashes the manifest and every parameter that changes the features, so a stale
cache is never read. Shards are written atomically, so an interrupted build resumes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from openkws.constants import SAMPLE_RATE
from openkws.engine.windows import SPEECH_THRESHOLD as SPEECH_THRESHOLD
from openkws.engine.windows import crop_window as crop_window
from openkws.engine.windows import keyword_window as keyword_window
from openkws.engine.windows import speech_span as speech_span  # window geometry: shared with the service
from openkws.text import G2P, load_inventory

from .config import Config

logger = logging.getLogger("openkws.training.dataset")

CACHE_VERSION = 3
SHARD_CLIPS = 512


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    phoneme_ids: tuple[int, ...]
    voice: str = ""
    engine: str = ""
    duration: float = 0.0
    split: str = "train"


def _phoneme_ids(text: str, phonemes: str | None, g2p: Callable[[str], object] | None) -> tuple[int, ...]:
    inv = load_inventory()
    if phonemes:
        symbols = phonemes.replace(",", " ").split()
        ids = tuple(inv.encode(symbols))
        if ids:
            return ids
    assert g2p is not None
    return tuple(g2p(text).ids)  # type: ignore[attr-defined]


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
                Clip(p, text, cache[key], row.get("voice", ""), row.get("engine", ""),
                     float(row.get("duration") or 0.0), split)
            )  # fmt: skip
    return clips


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz."""
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, sr, SAMPLE_RATE).astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


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
    and the feature cache call this alike, so they agree on the clips (and the cache key).
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


# --------------------------------------------------------------------------------------------- augmentation
SPEED_PROB = 0.3
SPEED_RANGE = (0.9, 1.1)
CONTEXT_WORD_PROB = 0.5
RIR_COUNT = 100
RIR_SEED = 0

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def make_augmenter(speech_paths: Sequence[str] | None = None, rir_dir: Path | None = None) -> Augment | None:
    """The data layer's :class:`openkws.training.data.augment.Augmenter` as ``f(wave, rng) -> wave``.

    Configured to keep timing: its speed perturbation and context padding are off (this module does
    both itself, so it knows where the keyword is), and its output is cut or zero-padded back to the
    input length (a reverberation tail past the padded clip is dropped). Noise, reverberation (a
    cached bank of simulated rooms), babble from ``speech_paths``, telephone/band-limit channels and
    gain stay as the data layer configures them. ``None`` (logged) when the data layer is absent.
    """
    try:
        from .data.augment import AugmentConfig, Augmenter, ClipPool, rir_bank
    except ImportError:
        logger.warning("openkws.training.data.augment is not available: waveform augmentation is off")
        return None
    rirs = rir_bank(RIR_COUNT, RIR_SEED, rir_dir) if rir_dir is not None else None
    speech = ClipPool(list(speech_paths)) if speech_paths else None
    aug = Augmenter(AugmentConfig(p_speed=0.0, p_context=0.0), np.random.default_rng(0), rirs, speech)

    def apply(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        aug.rng = rng
        out = aug(wave)
        if len(out) >= len(wave):
            return out[: len(wave)]
        return np.pad(out, (0, len(wave) - len(out)))

    return apply


def pad_with_context(wave: np.ndarray, context_samples: int) -> np.ndarray:
    return np.pad(wave, (context_samples, context_samples))


def add_context_word(
    padded: np.ndarray, other: np.ndarray, context_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Put a quieter other word into the left or right context (streams have neighbouring speech)."""
    if context_samples <= 0 or len(other) == 0:
        return padded
    gain = rng.uniform(0.1, 0.5)
    seg = other[-context_samples:] if rng.random() < 0.5 else other[:context_samples]
    out = padded.copy()
    if rng.random() < 0.5:  # left: the word ends where the keyword's context starts
        out[context_samples - len(seg) : context_samples] += gain * seg
    else:
        start = len(padded) - context_samples
        out[start : start + len(seg)] += gain * seg
    return out


def augmented_padded(
    wave: np.ndarray, context: int, rng: np.random.Generator, aug: Augment | None, other: np.ndarray | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """One augmented training rendition of a clip: speed perturbation, context padding, maybe a
    neighbouring word, then the timing-preserving augmenter. Returns (audio, keyword span)."""
    if rng.random() < SPEED_PROB:
        from .data.augment import speed_perturb

        wave = speed_perturb(wave, float(rng.uniform(*SPEED_RANGE)))
    s, e = speech_span(wave)  # on the clean (speed-perturbed) clip: noise would blur it
    padded = pad_with_context(wave, context)
    if other is not None and rng.random() < CONTEXT_WORD_PROB:
        padded = add_context_word(padded, other, context, rng)
    if aug is not None:
        padded = aug(padded, rng)
    return padded.astype(np.float32), (s + context, e + context)


# --------------------------------------------------------------------------------------------- feature cache
@dataclass
class FeatureStore:
    """All cached features of one split: ``feats[i][v]`` is clip i, variant v, [T, F] float16;
    ``spans[i][v]`` the keyword's (start, end) sample in that variant's padded audio."""

    clips: list[Clip]
    feats: list[list[np.ndarray]]
    spans: list[np.ndarray]  # per clip: [variants, 2]
    context_samples: int
    frontend: str

    @property
    def variants(self) -> int:
        return len(self.feats[0]) if self.feats else 0

    def clean_spans(self) -> list[tuple[int, int]]:
        return [(int(sp[0, 0]), int(sp[0, 1])) for sp in self.spans]


def _manifest_digest(clips: Sequence[Clip]) -> str:
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.path}|{c.text}|{c.voice}|{c.split}\n".encode())
    return h.hexdigest()[:16]


def cache_dir_for(root: Path, frontend: str, clips: Sequence[Clip], context_s: float, variants: int) -> Path:
    key = json.dumps([CACHE_VERSION, frontend, _manifest_digest(clips), round(context_s, 4), variants])
    return Path(root) / f"{frontend}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


_WORKER: dict[str, object] = {}


def _worker_init(
    frontend: str, context_samples: int, variants: int, speech_paths: list[str] | None, rir_dir: str | None
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .models.frontend import feature_extractor

    _WORKER.update(
        fx=feature_extractor(frontend, threads=1),
        ctx=context_samples,
        variants=variants,
        aug=make_augmenter(speech_paths, Path(rir_dir) if rir_dir else None) if variants else None,
    )


def _featurise(job: tuple[int, str, str | None]) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """One clip -> ([T, F] float16 per variant, keyword span per variant in its padded audio)."""
    idx, path, other_path = job
    fx = _WORKER["fx"]
    ctx = int(_WORKER["ctx"])  # type: ignore[arg-type]
    wave = load_audio(Path(path))
    s, e = speech_span(wave)
    out = [fx.features(pad_with_context(wave, ctx)).astype(np.float16)]  # type: ignore[attr-defined]
    spans = [(s + ctx, e + ctx)]
    aug = _WORKER["aug"]
    rng = np.random.default_rng(idx)
    other = load_audio(Path(other_path)) if other_path else None
    for _ in range(int(_WORKER["variants"])):  # type: ignore[call-overload]
        audio, span = augmented_padded(wave, ctx, rng, aug, other)  # type: ignore[arg-type]
        out.append(fx.features(audio).astype(np.float16))  # type: ignore[attr-defined]
        spans.append(span)
    return out, spans


def build_feature_cache(
    clips: Sequence[Clip],
    frontend: str,
    cache_root: Path,
    context_s: float,
    variants: int,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> FeatureStore:
    """Compute (or load) features for ``clips``: the clean rendition plus ``variants`` augmented ones.

    Augmentation uses babble from these clips and a bank of simulated rooms cached next to the cache
    root (``<cache_root>/../rirs``), built once in this process before any worker starts.
    """
    from tqdm import tqdm

    clips = list(clips)
    ctx = int(round(context_s * SAMPLE_RATE))
    out_dir = cache_dir_for(cache_root, frontend, clips, context_s, variants)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"frontend": frontend, "clips": len(clips), "context_s": context_s, "variants": variants,
            "version": CACHE_VERSION}  # fmt: skip
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    n_shards = math.ceil(len(clips) / SHARD_CLIPS)
    todo = [i for i in range(n_shards) if not (out_dir / f"shard_{i:05d}.npz").is_file()]
    if todo:
        rng = np.random.default_rng(seed)
        others = rng.integers(0, len(clips), len(clips))
        jobs_by_shard = {
            i: [
                (j, str(clips[j].path), str(clips[int(others[j])].path) if variants else None)
                for j in range(i * SHARD_CLIPS, min(len(clips), (i + 1) * SHARD_CLIPS))
            ]
            for i in todo
        }
        speech_paths = [str(c.path) for c in clips] if variants else None
        rir_dir = str(Path(cache_root).parent / "rirs") if variants else None
        if variants:
            make_augmenter(None, Path(rir_dir) if rir_dir else None)  # simulate + cache the rooms once, here
        total = sum(len(v) for v in jobs_by_shard.values())
        bar = tqdm(
            total=total, desc=f"features[{frontend}] x{1 + variants}", unit="clip", disable=not progress
        )
        init_args = (frontend, ctx, variants, speech_paths, rir_dir)
        pool = None
        if workers > 1:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(workers, _worker_init, init_args)
        else:
            _worker_init(*init_args)
        try:
            for i in todo:
                jobs = jobs_by_shard[i]
                results = pool.imap(_featurise, jobs, chunksize=8) if pool else map(_featurise, jobs)
                feats, spans = [], []
                for r in results:
                    feats.append(r[0])
                    spans.append(r[1])
                    bar.update(1)
                _write_shard(out_dir / f"shard_{i:05d}.npz", feats, spans)
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
    return _load_store(out_dir, clips, n_shards, ctx, frontend)


def _write_shard(path: Path, feats: list[list[np.ndarray]], spans: list[list[tuple[int, int]]]) -> None:
    flat = [v for clip in feats for v in clip]
    lengths = np.array([len(v) for v in flat], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, feats=np.concatenate(flat) if flat else np.zeros((0, 1), np.float16), offsets=offsets,
        per_clip=np.array(len(feats[0]) if feats else 0),
        spans=np.array([sp for clip in spans for sp in clip], np.int64).reshape(-1, 2),
    )  # fmt: skip
    os.replace(tmp, path)


def _load_store(out_dir: Path, clips: list[Clip], n_shards: int, ctx: int, frontend: str) -> FeatureStore:
    feats: list[list[np.ndarray]] = []
    spans: list[np.ndarray] = []
    for i in range(n_shards):
        z = np.load(out_dir / f"shard_{i:05d}.npz")
        f, off, per, sp = z["feats"], z["offsets"], int(z["per_clip"]), z["spans"]
        views = [f[off[k] : off[k + 1]] for k in range(len(off) - 1)]
        feats.extend(views[k : k + per] for k in range(0, len(views), per))
        spans.extend(sp[k : k + per] for k in range(0, len(sp), per))
    if len(feats) != len(clips):
        raise RuntimeError(
            f"feature cache {out_dir} holds {len(feats)} clips, expected {len(clips)}; delete it"
        )
    return FeatureStore(clips, feats, spans, ctx, frontend)


# --------------------------------------------------------------------------------------------- waveform store
@dataclass
class WaveStore:
    """Waveforms of a split in memory (int16), for on-the-fly augmentation (logmel front-end)."""

    clips: list[Clip]
    waves: list[np.ndarray]
    spans: np.ndarray

    def clean_spans(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in self.spans]


def build_wave_store(clips: Sequence[Clip], cache_root: Path, progress: bool = True) -> WaveStore:
    from tqdm import tqdm

    clips = list(clips)
    path = Path(cache_root) / f"waves-{_manifest_digest(clips)}.npz"
    if path.is_file():
        with np.load(path) as z:
            # z["audio"] reads (and copies) the whole array on every access: read it once, or each
            # clip's view pins its own full copy (30k clips -> OOM).
            audio, off, spans_ = z["audio"], z["offsets"], z["spans"]
        waves = [audio[off[i] : off[i + 1]] for i in range(len(clips))]
        return WaveStore(clips, waves, spans_)
    waves, spans = [], []
    for c in tqdm(clips, desc="waveforms", unit="clip", disable=not progress):
        w = load_audio(c.path)
        spans.append(speech_span(w))
        waves.append(np.clip(w * 32767.0, -32768, 32767).astype(np.int16))
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in waves])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(waves), offsets=offsets, spans=np.array(spans, np.int64))
    os.replace(tmp, path)
    return WaveStore(clips, waves, np.array(spans, np.int64))


# --------------------------------------------------------------------------------------------- batches
@dataclass
class Batch:
    features: np.ndarray  # [B, T, F] float32 (zero padded)
    lengths: np.ndarray  # [B]
    labels: np.ndarray  # [B] index into text_ids (batch-local class)
    word_ids: np.ndarray  # [B] global training-vocabulary class id (SphereFace2)
    text_ids: np.ndarray  # [K, L] int64 phoneme ids (zero padded)
    text_lengths: np.ndarray  # [K]
    extras: dict[str, object] = field(default_factory=dict)


def pad_stack(arrays: Sequence[np.ndarray], dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(a) for a in arrays], np.int64)
    t = int(lengths.max()) if len(lengths) else 0
    shape = (len(arrays), t, *arrays[0].shape[1:]) if arrays else (0, 0)
    out = np.zeros(shape, dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


def confusable_neighbours(keys: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], list[tuple[int, ...]]]:
    """Pronunciations one phoneme edit apart (substitution, insertion or deletion), found with
    symmetric deletion keys instead of all-pairs edit distance (fast for tens of thousands of words).

    >>> nb = confusable_neighbours([(1, 2, 3), (1, 9, 3), (1, 2), (7, 8)])
    >>> nb[(1, 2, 3)], nb[(7, 8)]
    ([(1, 2), (1, 9, 3)], [])
    """
    index: dict[tuple[int, ...], set[tuple[int, ...]]] = {}

    def variants(p: tuple[int, ...]) -> set[tuple[int, ...]]:
        return {p} | {p[:i] + p[i + 1 :] for i in range(len(p))}

    for p in keys:
        for v in variants(p):
            index.setdefault(v, set()).add(p)
    out: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for p in keys:
        cands: set[tuple[int, ...]] = set()
        for v in variants(p):
            cands |= index.get(v, set())
        cands.discard(p)
        out[p] = sorted(cands)
    return out


class KeywordBatches:
    """K keywords x M utterances per batch. A keyword class is a *pronunciation* (phoneme ids), so
    homophones ("two", "too") share a class instead of being each other's negatives.

    ``hard_fraction`` of the batch's classes come in confusable pairs (one phoneme edit apart; see
    :func:`confusable_neighbours`), so the losses see the hard negatives the hard-pair evaluation
    asks about, not only random ones.

    Sharding for DDP: each rank takes every ``world``-th batch of one shared, seeded class order,
    so ranks see disjoint seed classes (DistributedSampler-style) and equal numbers of batches.
    With :meth:`set_buckets`, batches hold classes of one window length.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        k: int,
        m: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        batches_per_epoch: int | None = None,
        hard_fraction: float = 0.0,
    ) -> None:
        by_key: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(clips):
            by_key.setdefault(c.phoneme_ids, []).append(i)
        self.keys = sorted(key for key, idx in by_key.items() if len(idx) >= m)
        if len(self.keys) < 2:
            raise ValueError(f"need at least 2 keywords with >= {m} clips each; got {len(self.keys)}")
        self.by_key = by_key
        self.class_id = {key: i for i, key in enumerate(self.keys)}
        self.k, self.m = min(k, len(self.keys)), m
        self.seed, self.rank, self.world = seed, rank, world
        # one epoch ~ every class once as a seed (confusable partners come on top)
        self.batches_per_epoch = batches_per_epoch or max(
            1, int(len(self.keys) / (1 + hard_fraction)) // self.k // world
        )
        self.hard_fraction = hard_fraction
        self.neighbours = confusable_neighbours(self.keys) if hard_fraction > 0 else {}
        if self.neighbours:
            usable = set(self.keys)
            self.neighbours = {key: [n for n in v if n in usable] for key, v in self.neighbours.items()}
        self.bucket: dict[tuple[int, ...], int] = {}
        self.epoch = 0

    @property
    def words(self) -> list[tuple[int, ...]]:
        return self.keys

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _classes(self, seeds: list[tuple[int, ...]], rng: np.random.Generator) -> list[tuple[int, ...]]:
        chosen: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        pending = list(seeds)
        while len(chosen) < self.k and pending:
            key = pending.pop(0)
            if key in seen:
                continue
            chosen.append(key)
            seen.add(key)
            nbs = [n for n in self.neighbours.get(key, ()) if n not in seen]
            if nbs and len(chosen) < self.k and rng.random() < self.hard_fraction:
                n = nbs[int(rng.integers(len(nbs)))]
                chosen.append(n)
                seen.add(n)
        while len(chosen) < self.k:  # seeds exhausted by duplicates: top up at random
            key = self.keys[int(rng.integers(len(self.keys)))]
            if key not in seen:
                chosen.append(key)
                seen.add(key)
        return chosen

    def set_buckets(self, clip_bucket: Sequence[int]) -> None:
        """Group batches by window length: ``clip_bucket[i]`` is clip i's window (frames). A class's
        bucket is its clips' most common window. Same-length batches waste no compute on padding
        and make length a useless cue between a batch's negatives."""
        self.bucket = {}
        for key in self.keys:
            vals = [clip_bucket[i] for i in self.by_key[key]]
            self.bucket[key] = max(set(vals), key=vals.count)
        if self.neighbours:  # keep confusable partners inside the bucket
            self.neighbours = {
                k: [n for n in v if self.bucket[n] == self.bucket[k]] for k, v in self.neighbours.items()
            }

    def _seed_groups(self, rng: np.random.Generator) -> list[list[tuple[int, ...]]]:
        """One epoch of seed-class groups (K each), bucketed by window length when buckets are set."""
        order = [self.keys[i] for i in rng.permutation(len(self.keys))]
        if not self.bucket:
            return [order[i : i + self.k] for i in range(0, len(order) - self.k + 1, self.k)]
        by_bucket: dict[int, list[tuple[int, ...]]] = {}
        for key in order:
            by_bucket.setdefault(self.bucket[key], []).append(key)
        groups, rest = [], []
        for b in sorted(by_bucket):
            keys = by_bucket[b]
            n_full = len(keys) // self.k
            groups += [keys[i * self.k : (i + 1) * self.k] for i in range(n_full)]
            rest += keys[n_full * self.k :]
        groups += [rest[i : i + self.k] for i in range(0, len(rest) - self.k + 1, self.k)]  # mixed leftovers
        return [groups[i] for i in rng.permutation(len(groups))]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[list[tuple[int, ...]]] = []
        needed = self.batches_per_epoch * self.world
        while len(groups) < needed:
            groups += self._seed_groups(rng) or [
                [self.keys[i] for i in rng.permutation(len(self.keys))[: self.k]]
            ]
        for b in range(self.batches_per_epoch):
            seeds = groups[b * self.world + self.rank]
            batch = []
            for key in self._classes(seeds, rng):
                pool = self.by_key[key]
                batch.extend(int(i) for i in rng.choice(pool, self.m, replace=False))
            yield batch


class WindowBatcher:
    """Turns clip indices into :class:`Batch` es of keyword windows, for either front-end."""

    def __init__(
        self,
        store: FeatureStore | WaveStore,
        frontend: str,
        windows: tuple[int, ...],
        class_id: dict[tuple[int, ...], int],
        train: bool,
        seed: int = 0,
        frame_mask_prob: float = 0.0,
        max_mask_frames: int = 0,
        context_s: float = 0.6,
        augment_prob: float = 0.0,
        rir_dir: Path | None = None,
    ) -> None:
        self.store, self.frontend, self.windows = store, frontend, windows
        self.class_id, self.train = class_id, train
        self.rng = np.random.default_rng(seed)
        self.frame_mask_prob, self.max_mask_frames = frame_mask_prob, max_mask_frames
        self.context = int(round(context_s * SAMPLE_RATE))
        self.augment_prob = augment_prob
        self.rir_dir = rir_dir
        self._fx = None
        self._aug: Augment | None | bool = False

    # logmel: features on the fly from waveforms
    def _wave_features(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        assert isinstance(self.store, WaveStore)
        if self._fx is None:
            from .models.frontend import feature_extractor

            self._fx = feature_extractor(self.frontend, threads=1)
        wave = self.store.waves[i].astype(np.float32) / 32767.0
        if self.train and self.augment_prob > 0 and self.rng.random() < self.augment_prob:
            if self._aug is False:
                self._aug = make_augmenter([str(c.path) for c in self.store.clips], self.rir_dir)
            j = int(self.rng.integers(len(self.store.waves)))
            other = self.store.waves[j].astype(np.float32) / 32767.0
            padded, span = augmented_padded(wave, self.context, self.rng, self._aug or None, other)  # type: ignore[arg-type]
        else:
            s, e = self.store.spans[i]
            padded, span = (
                pad_with_context(wave, self.context),
                (int(s) + self.context, int(e) + self.context),
            )
        return self._fx.features(padded), span  # type: ignore[attr-defined]

    def clip_features(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        if isinstance(self.store, WaveStore):
            return self._wave_features(i)
        variants = self.store.feats[i]
        v = int(self.rng.integers(len(variants))) if self.train else 0
        s, e = self.store.spans[i][v]
        return variants[v].astype(np.float32), (int(s), int(e))

    def window(self, i: int) -> np.ndarray:
        feats, span = self.clip_features(i)
        w = keyword_window(span, self.frontend, self.windows)
        start = crop_window(len(feats), span, w, self.frontend, self.rng if self.train else None)
        x = feats[start : start + w].copy()
        if self.train and self.max_mask_frames > 0 and self.rng.random() < self.frame_mask_prob:
            n = int(self.rng.integers(1, self.max_mask_frames + 1))
            s0 = int(self.rng.integers(0, max(1, len(x) - n + 1)))
            x[s0 : s0 + n] = x.mean(axis=0, keepdims=True)  # mask: the window's mean frame
        return x

    def __call__(self, indices: Sequence[int]) -> Batch:
        clips = self.store.clips
        keys: dict[tuple[int, ...], int] = {}
        text_ids: list[np.ndarray] = []
        labels = []
        for i in indices:
            key = clips[i].phoneme_ids
            if key not in keys:
                keys[key] = len(keys)
                text_ids.append(np.array(key, np.int64))
            labels.append(keys[key])
        feats, lengths = pad_stack([self.window(i) for i in indices])
        tids, tlen = pad_stack(text_ids, np.int64)
        return Batch(
            features=feats, lengths=lengths, labels=np.array(labels, np.int64),
            word_ids=np.array([self.class_id.get(clips[i].phoneme_ids, -1) for i in indices], np.int64),
            text_ids=tids, text_lengths=tlen,
        )  # fmt: skip

"""Training data of a config: clip selection, feature caches (or waveforms), sampler and batchers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from openkws.engine.windows import keyword_window
from openkws.training.config import Config
from openkws.training.distributed import DistInfo
from openkws.training.loader.batcher import WindowBatcher
from openkws.training.loader.clips import Clip, config_clips
from openkws.training.loader.feature_cache import FeatureStore, build_feature_cache, config_spec, ready_prefix
from openkws.training.loader.renditions import make_augmenter
from openkws.training.loader.sampler import KeywordBatches
from openkws.training.loader.wave_store import WaveStore, build_wave_store
from openkws.training.nets.kws_model import KWSModel

logger = logging.getLogger("openkws.training.trainer")


@dataclass
class TrainData:
    train_clips: list[Clip]
    train_store: FeatureStore | WaveStore
    dev_store: FeatureStore | WaveStore
    sampler: KeywordBatches
    batcher: WindowBatcher
    dev_batchers: dict[str, WindowBatcher]  # "" = clean, "aug_" = one augmented rendition


def build_stores(
    cfg: Config, workers: int, progress: bool, build_all: bool = False
) -> tuple[list[Clip], FeatureStore | WaveStore, FeatureStore | WaveStore]:
    """(train clips, train store, validation store) of a config; with ``data.cache_ready_only`` the
    train clips are cut to the finished shards of a cache another process is still building
    (``build_all``: the cache builder itself, which ignores that setting)."""
    dc, seed = cfg.data, cfg.train.seed
    train_clips, dev_clips = config_clips(cfg)
    if not dev_clips:
        raise ValueError(f"{dc.manifest} has no split=dev clips; validation needs them")
    root = Path(dc.cache_dir)
    # validation first: it is small, and training on a finished prefix of the train cache
    # (`data.cache_ready_only`) can then start while the train cache is still being built
    dev_spec = config_spec(cfg, 1 if dc.val_augmented else 0, background=False)
    dev_store = build_feature_cache(dev_clips, dev_spec, root, workers, seed, progress, cfg.train.device)
    train_store: FeatureStore | WaveStore
    if cfg.model.frontend == "speech_embedding":
        spec = config_spec(cfg, dc.augment_variants)
        if dc.cache_ready_only and not build_all:
            n = ready_prefix(train_clips, spec, root)
            if n == 0:
                raise FileNotFoundError(f"data.cache_ready_only: no finished shard under {root / spec.key()}")
            logger.info("training on the %d of %d clips whose cache shards are finished", n, len(train_clips))
            train_clips = train_clips[:n]
        train_store = build_feature_cache(train_clips, spec, root, workers, seed, progress, cfg.train.device)
    else:
        train_store = build_wave_store(train_clips, root, progress)
        if dc.augment_prob > 0:
            make_augmenter(
                None, root.parent / "rirs"
            )  # simulate + cache the rooms before loader workers start
    return train_clips, train_store, dev_store


def prepare_data(cfg: Config, model: KWSModel, dinfo: DistInfo, workers: int, progress: bool) -> TrainData:
    dc, tc = cfg.data, cfg.train
    if dinfo.enabled and not dinfo.main:  # rank 0 builds caches first; the others then load them
        dist.barrier()
    train_clips, train_store, dev_store = build_stores(cfg, workers, progress and dinfo.main)
    if dinfo.enabled and dinfo.main:
        dist.barrier()
    sampler = KeywordBatches(
        train_clips,
        dc.keywords_per_batch,
        dc.utterances_per_keyword,
        tc.seed,
        dinfo.rank,
        dinfo.world,
        tc.batches_per_epoch,
        dc.hard_fraction,
    )
    frontend, windows = cfg.model.frontend, model.windows
    if dc.bucket_by_window:
        sampler.set_buckets([keyword_window(sp, frontend, windows) for sp in train_store.clean_spans()])
    batcher = WindowBatcher(
        train_store,
        frontend,
        windows,
        sampler.class_id,
        train=True,
        seed=tc.seed + 7919 * dinfo.rank,
        frame_mask_prob=dc.frame_mask_prob,
        max_mask_frames=dc.max_mask_frames,
        context_s=dc.context_seconds,
        augment_prob=dc.augment_prob,
        rir_dir=Path(dc.cache_dir).parent / "rirs",
        background_fraction=dc.background_fraction,
    )
    dev = {"": WindowBatcher(dev_store, frontend, windows, {}, train=False, context_s=dc.context_seconds)}
    if dc.val_augmented:
        dev["aug_"] = WindowBatcher(
            dev_store, frontend, windows, {}, train=False, context_s=dc.context_seconds, eval_variant=1
        )
    return TrainData(train_clips, train_store, dev_store, sampler, batcher, dev)

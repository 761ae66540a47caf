"""Trainer: K keywords x M utterances batches, AdamW with the lr halved every N epochs, CPU or CUDA,
``torchrun`` DDP, tqdm progress, checkpoints with resume, metrics CSVs.

The objective (:class:`Objective`) is one ``nn.Module`` that owns the model *and* every loss, so the
optimizer sees the losses' learnable parameters (AdaMS margins/scales, SphereFace2 weights and bias,
modality classifiers) and DDP wraps a single module::

    L = L_utt(AWE, AGWE)                                   # cfg.loss.utterance (proxy family)
      + lambda_phn * sum_l L_l(aligned audio per phoneme, phoneme-class proxies)   # AsyP + AdaMS
      + MAL_utt + MAL_phn       # classifiers: full gradient; encoders: -lambda_adv x it (GRL, DANN ramp)
      + w_kw * SphereFace2(AWE, training-vocabulary id)
      + w_rpl * RPL(AWE, AGWE of the clip's class) + w_add * ADD(AWE)

Proxy-family losses use ``reduction="mean"`` unless the config says otherwise: the paper sums over
the batch, but a mean keeps the lambda weights meaningful whatever K x M and the number of phonemes.

Outputs in ``out_dir``: ``steps.csv`` (per logged step: every loss term, degenerate-batch counts,
MAL accuracies, lr), ``epochs.csv`` (train loss, validation EER/AUC/AP on easy and hard dev pairs),
``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``config.yaml``.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from openkws.text import load_inventory
from torch import nn

from .config import Config, TrainConfig
from .dataset import (
    Batch,
    Clip,
    FeatureStore,
    KeywordBatches,
    WaveStore,
    WindowBatcher,
    build_feature_cache,
    build_wave_store,
    config_clips,
    keyword_window,
    make_augmenter,
)
from .evaluate import make_pairs, summary
from .models.kws_model import KWSModel, build_model
from .models.text_encoder import length_mask
from .models.windows import window_positions

logger = logging.getLogger("openkws.training.trainer")

FIRST_PHONE_ID = 3
VAL_CHUNK = 32  # validation clips per batched forward
SINGLE_VIEW = frozenset(
    {"triplet", "ap"}
)  # audio-only losses: no gradient reaches the text encoder  # ids 0..2 are <pad>, <unk> and the word boundary: no phoneme-level class


# --------------------------------------------------------------------------------------------- objective
def _make_loss(name: str, **kwargs: Any) -> nn.Module:
    from .losses import LOSSES, build_loss

    cls = LOSSES.get(name)
    if cls is not None and "reduction" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("reduction", "mean")
    return build_loss(name, **kwargs)


class Objective(nn.Module):
    """Model + losses; ``forward(batch tensors) -> (total loss, {term: value})``."""

    def __init__(self, cfg: Config, model: KWSModel, num_words: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        lc = cfg.loss
        d = cfg.model.embedding_dim
        if lc.utterance in SINGLE_VIEW:
            raise ValueError(
                f"utterance loss {lc.utterance!r} ignores the text proxies, so the text encoder would never "
                f"train; use a cross-modal loss (e.g. mv_triplet instead of triplet, apfc instead of ap)"
            )
        self.utt = _make_loss(lc.utterance, **lc.utterance_kwargs)
        self.phn = nn.ModuleDict()
        if lc.phoneme.enabled:
            for name in lc.phoneme.losses:
                kw = {"num_classes": load_inventory().size} if name == "adams" else {}
                self.phn[name] = _make_loss(name, **kw)
        self.mal_utt = _make_loss("mal", dim=d, hidden=lc.mal.hidden) if lc.mal.utterance else None
        self.mal_phn = (
            _make_loss("mal", dim=d, hidden=lc.mal.hidden) if lc.mal.phoneme and lc.phoneme.enabled else None
        )
        self.kw = _make_loss("sphereface2", dim=d, num_classes=max(2, num_words)) if lc.keyword else None
        self.rpl = _make_loss("rpl", variant=lc.rpl) if lc.rpl else None
        self.add = _make_loss("add") if lc.add_weight > 0 else None
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1]: sets the gradient-reversal strength of the MAL losses.

        The modality classifiers take the full BCE gradient (they should win their game), and the
        encoders receive ``-lambda_adv(progress)`` times it through the reversal layer."""
        mal = self.cfg.loss.mal
        ramp = 1.0 if mal.schedule == "constant" else 2.0 / (1.0 + math.exp(-mal.gamma * progress)) - 1.0
        for m in (self.mal_utt, self.mal_phn):
            if m is not None:
                m.grl_lambda = mal.weight * ramp

    def losses(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"utt": self.utt}
        out.update({f"phn_{k}": v for k, v in self.phn.items()})
        for name in ("mal_utt", "mal_phn", "kw", "rpl", "add"):
            m = getattr(self, name)
            if m is not None:
                out[name] = m
        return out

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        word_ids: torch.Tensor,
        text_ids: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lc = self.cfg.loss
        audio = self.model.encode_audio(features, lengths)
        proxy, phn = self.model.encode_text(text_ids, text_lengths)
        terms: dict[str, torch.Tensor] = {"utt": self.utt(audio.embedding, proxy, labels)}
        total = terms["utt"]
        if len(self.phn) or self.mal_phn is not None:
            # text of each clip, aligned to the clip's frames by cross-attention
            ids, tl, phn_c = text_ids[labels], text_lengths[labels], phn[labels]
            aligned, _ = self.model.align(phn_c, tl, audio)
            valid = (length_mask(tl, ids.shape[1]) > 0) & (ids >= FIRST_PHONE_ID)
            a, t, cls = aligned[valid], phn_c[valid], ids[valid]
            if a.shape[0] > lc.phoneme.max_anchors:
                keep = torch.randperm(a.shape[0], device=a.device)[: lc.phoneme.max_anchors]
                a, t, cls = a[keep], t[keep], cls[keep]
            uniq, inv = torch.unique(cls, return_inverse=True)
            # one proxy per phoneme class: the mean text phoneme embedding of that class in the batch
            sums = torch.zeros(len(uniq), t.shape[1], dtype=t.dtype, device=t.device).index_add(0, inv, t)
            counts = torch.bincount(inv, minlength=len(uniq)).clamp_min(1).unsqueeze(1).to(t.dtype)
            phn_proxies = sums / counts
            phn_total = torch.zeros((), device=features.device)
            for name, loss in self.phn.items():
                kw = {"class_ids": uniq} if name == "adams" else {}
                terms[f"phn_{name}"] = loss(a, phn_proxies, inv, **kw)
                phn_total = phn_total + terms[f"phn_{name}"]
            total = total + lc.phoneme.weight * phn_total
            if self.mal_phn is not None:  # lambda_adv acts in the reversal layer (set_progress)
                terms["mal_phn"] = self.mal_phn(a, t)
                total = total + terms["mal_phn"]
        if self.mal_utt is not None:
            terms["mal_utt"] = self.mal_utt(audio.embedding, proxy)
            total = total + terms["mal_utt"]
        if self.kw is not None:
            terms["kw"] = self.kw(audio.embedding, word_ids)
            total = total + lc.keyword_weight * terms["kw"]
        if self.rpl is not None:
            terms["rpl"] = self.rpl(audio.embedding, proxy[labels], labels)
            total = total + lc.rpl_weight * terms["rpl"]
        if self.add is not None:
            terms["add"] = self.add(audio.embedding, labels)
            total = total + lc.add_weight * terms["add"]
        return total, terms


# --------------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use device: cpu or auto")
    return torch.device(name)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` set); no-op otherwise."""
    if "WORLD_SIZE" not in os.environ:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def batch_to_tensors(b: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(b.features).to(device),
        torch.from_numpy(b.lengths).to(device),
        torch.from_numpy(b.labels).to(device),
        torch.from_numpy(b.word_ids).to(device),
        torch.from_numpy(b.text_ids).to(device),
        torch.from_numpy(b.text_lengths).to(device),
    )


class _Indices(torch.utils.data.Dataset):
    def __getitem__(self, i: int) -> int:
        return i

    def __len__(self) -> int:  # pragma: no cover - batch_sampler drives the loader
        return 1 << 62


def _reseed_worker(batcher: WindowBatcher, _worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    batcher.rng = np.random.default_rng(info.seed if info is not None else None)


def batch_iterator(sampler: KeywordBatches, batcher: WindowBatcher, workers: int) -> Iterator[Batch]:
    """Batches of one epoch; with ``workers > 0`` assembled in DataLoader worker processes (each with
    its own random stream), which is what on-the-fly log-mel augmentation needs to keep up."""
    if workers == 0:
        return (batcher(indices) for indices in sampler)
    import functools

    loader = torch.utils.data.DataLoader(
        _Indices(), batch_sampler=sampler, collate_fn=batcher, num_workers=workers,
        worker_init_fn=functools.partial(_reseed_worker, batcher), prefetch_factor=2,
    )  # fmt: skip
    return iter(loader)


# --------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def window_embeddings(model: KWSModel, feats: np.ndarray, device: torch.device) -> torch.Tensor:
    """Every detector window of one clip -> [num_windows, D] (same windows as the service/eval)."""
    return batch_window_embeddings(model, [feats], device)[0]


@torch.no_grad()
def batch_window_embeddings(
    model: KWSModel, clips: list[np.ndarray], device: torch.device
) -> list[torch.Tensor]:
    """:func:`window_embeddings` for several clips with one ``frames`` call (zero padding at the end
    of a clip never reaches its valid frames) and one ``pool`` call."""
    ctx = model.context_frames
    x = torch.zeros(len(clips), max(len(f) for f in clips), model.feature_dim)
    for i, f in enumerate(clips):
        x[i, : len(f)] = torch.from_numpy(np.asarray(f, np.float32))
    frames = model.frames(x.to(device))
    rows: list[tuple[int, int, int]] = []  # (clip, start, n output frames)
    counts = []
    for i, f in enumerate(clips):
        pos = window_positions(len(f), model.windows, model.window_stride)
        rows += [(i, s, w - ctx) for s, w in pos]
        counts.append(len(pos))
    tmax = max(n for _, _, n in rows)
    batch = torch.zeros(len(rows), tmax, frames.shape[2], device=device)
    mask = torch.zeros(len(rows), tmax, device=device)
    for k, (i, s, n) in enumerate(rows):
        batch[k, :n] = frames[i, s : s + n]
        mask[k, :n] = 1
    return list(torch.split(model.pool(batch, mask), counts))


@torch.no_grad()
def validate(model: KWSModel, store: FeatureStore | WaveStore, batcher: WindowBatcher, max_clips: int,
             device: torch.device, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """EER/AUC/AP on dev pairs (own text vs random and phonetically closest other text)."""
    model.eval()
    clips = store.clips
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(clips), min(max_clips, len(clips)), replace=False).tolist())
    sub = [clips[i] for i in idx]
    texts = [c.text for c in sub]
    phon = {c.text: c.phoneme_ids for c in sub}
    if len(set(texts)) < 2:
        return {}
    pairs = make_pairs(texts, phon, seed)
    vocab = sorted(phon)
    ids = [torch.tensor(phon[t]) for t in vocab]
    lengths = torch.tensor([len(i) for i in ids])
    padded = nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device)
    proxies = dict(zip(vocab, model.text(padded, lengths.to(device)), strict=True))
    emb: dict[int, torch.Tensor] = {}
    needed = sorted({p.clip for p in pairs})
    for c0 in range(0, len(needed), VAL_CHUNK):
        chunk = needed[c0 : c0 + VAL_CHUNK]
        feats = [batcher.clip_features(idx[c])[0] for c in chunk]
        emb.update(zip(chunk, batch_window_embeddings(model, feats, device), strict=True))
    scores = np.array([float((emb[p.clip] @ proxies[p.text]).max()) for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    labels = np.array([p.label for p in pairs])
    out: dict[str, float] = {}
    for neg in ("easy", "hard"):
        sel = (kinds == "positive") | (kinds == neg)
        if (kinds == neg).any():
            m = summary(scores[sel], labels[sel])
            out.update({f"val_{neg}_eer": m["eer"], f"val_{neg}_auc": m["auc"], f"val_{neg}_ap": m["ap"]})
    return out


# --------------------------------------------------------------------------------------------- trainer
def build_optimizer(
    objective: Objective, tc: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    """AdamW over the model's *and the losses'* parameters (two groups: ``loss_lr`` may differ);
    the lr is halved every ``lr_halve_every`` epochs (the scheduler steps once per epoch)."""
    loss_params = [p for n, p in objective.named_parameters() if not n.startswith("model.")]
    groups: list[dict[str, Any]] = [{"params": list(objective.model.parameters()), "lr": tc.lr}]
    if loss_params:
        groups.append({"params": loss_params, "lr": tc.loss_lr or tc.lr})
    optim = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    return optim, torch.optim.lr_scheduler.StepLR(optim, step_size=tc.lr_halve_every, gamma=0.5)


class CSVLog:
    def __init__(self, path: Path, columns: list[str], append: bool) -> None:
        self.path, self.columns = path, columns
        if not (append and path.is_file()):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, "")) for c in self.columns])


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


@dataclass
class TrainResult:
    out_dir: Path
    epochs: int
    steps: int
    losses: list[float]  # mean train loss per epoch
    best: dict[str, float]
    checkpoint: Path


def data_summary(clips: list[Clip]) -> dict[str, Any]:
    return {
        "clips": len(clips),
        "words": len({c.text for c in clips}),
        "voices": len({c.voice for c in clips}),
        "engines": sorted({c.engine for c in clips if c.engine}),
    }


def train(
    cfg: Config,
    out_dir: Path,
    resume: bool | Path = False,
    cache_workers: int = 1,
    progress: bool = True,
    max_steps: int | None = None,
) -> TrainResult:
    """Train ``cfg``; returns a summary. ``max_steps`` stops early (timing runs, tests)."""
    out_dir = Path(out_dir)
    tc, dc = cfg.train, cfg.data
    device = resolve_device(tc.device)
    torch.set_num_threads(tc.threads)
    dinfo = init_distributed(device)
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
    seed_everything(tc.seed + dinfo.rank)
    if dinfo.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "checkpoints").mkdir(exist_ok=True)
        (out_dir / "config.yaml").write_text(
            yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)
        )

    # ---- data
    train_clips, dev_clips = config_clips(cfg)
    if not dev_clips:
        raise ValueError(f"{dc.manifest} has no split=dev clips; validation needs them")
    frontend = cfg.model.frontend
    cache_root = Path(dc.cache_dir)
    # rank 0 builds caches first; the others then load them
    if dinfo.enabled and not dinfo.main:
        dist.barrier()
    train_store: FeatureStore | WaveStore
    if frontend == "speech_embedding":
        train_store = build_feature_cache(train_clips, frontend, cache_root, dc.context_seconds, dc.augment_variants,
                                          cache_workers, tc.seed, progress and dinfo.main)  # fmt: skip
    else:
        train_store = build_wave_store(train_clips, cache_root, progress and dinfo.main)
    rir_dir = cache_root.parent / "rirs"
    if frontend == "logmel" and dc.augment_prob > 0 and dinfo.main:
        make_augmenter(None, rir_dir)  # simulate + cache the room bank before loader workers start
    dev_store = build_feature_cache(dev_clips, frontend, cache_root, dc.context_seconds, 0, cache_workers, tc.seed,
                                    progress and dinfo.main)  # fmt: skip
    if dinfo.enabled and dinfo.main:
        dist.barrier()
    sampler = KeywordBatches(train_clips, dc.keywords_per_batch, dc.utterances_per_keyword, tc.seed,
                             dinfo.rank, dinfo.world, tc.batches_per_epoch, dc.hard_fraction)  # fmt: skip
    model = build_model(cfg.model).to(device)
    windows = model.windows
    if dc.bucket_by_window:
        sampler.set_buckets([keyword_window(sp, frontend, windows) for sp in train_store.clean_spans()])
    batcher = WindowBatcher(train_store, frontend, windows, sampler.class_id, train=True, seed=tc.seed + 7919 * dinfo.rank,
                            frame_mask_prob=dc.frame_mask_prob, max_mask_frames=dc.max_mask_frames,
                            context_s=dc.context_seconds, augment_prob=dc.augment_prob, rir_dir=rir_dir)  # fmt: skip
    dev_batcher = WindowBatcher(dev_store, frontend, windows, {}, train=False, context_s=dc.context_seconds)

    # ---- objective + optimizer (model AND loss parameters)
    objective = Objective(cfg, model, len(sampler.words)).to(device)
    optim, sched = build_optimizer(objective, tc)
    runner: nn.Module = objective
    if dinfo.enabled:
        runner = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[dinfo.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )

    start_epoch, step, best, epoch_losses = 0, 0, {"score": math.inf}, []
    ckpt_dir = out_dir / "checkpoints"
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else ckpt_dir / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: checkpoint {path} not found")
        state = torch.load(path, map_location=device, weights_only=False)
        objective.load_state_dict(state["objective"])
        optim.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, step, best = state["epoch"], state["step"], state.get("best", best)
        epoch_losses = state.get("epoch_losses", [])
        if "rng" in state:
            torch.set_rng_state(state["rng"]["torch"])
            np.random.set_state(state["rng"]["numpy"])
            random.setstate(state["rng"]["python"])
            batcher.rng = np.random.default_rng(state["rng"]["batcher_seed"])
        logger.info("resumed from %s at epoch %d, step %d", path, start_epoch, step)

    names = list(objective.losses())
    step_cols = ["epoch", "step", "lr", "loss", *names, *[f"degenerate_{n}" for n in names],
                 "mal_acc_utt", "mal_acc_phn", "sec_per_step", "cpu_sec_per_step"]  # fmt: skip
    epoch_cols = ["epoch", "step", "train_loss", "val_easy_eer", "val_hard_eer", "val_easy_auc", "val_hard_auc",
                  "val_easy_ap", "val_hard_ap", "lr", "epoch_sec", "val_sec"]  # fmt: skip
    step_log = CSVLog(out_dir / "steps.csv", step_cols, append=bool(resume)) if dinfo.main else None
    epoch_log = CSVLog(out_dir / "epochs.csv", epoch_cols, append=bool(resume)) if dinfo.main else None
    summary_data = data_summary(train_clips)

    from tqdm import tqdm

    last_path = ckpt_dir / "last.pt"
    total_steps = max(1, tc.epochs * len(sampler))
    done = False
    for epoch in range(start_epoch, tc.epochs):
        objective.train()
        sampler.set_epoch(epoch)
        t_epoch = time.time()
        run_loss, n_batches = 0.0, 0
        batches = batch_iterator(sampler, batcher, dc.num_workers)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="batch", total=len(sampler),
                   disable=not (progress and dinfo.main), dynamic_ncols=True)  # fmt: skip
        for batch in bar:
            t0, c0 = time.time(), time.process_time()
            objective.set_progress(step / total_steps)
            tensors = batch_to_tensors(batch, device)
            total, terms = runner(*tensors)
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"non-finite loss at step {step}: { {k: float(v) for k, v in terms.items()} }"
                )
            optim.zero_grad(set_to_none=True)
            total.backward()
            nn.utils.clip_grad_norm_(objective.parameters(), tc.grad_clip)
            optim.step()
            step += 1
            n_batches += 1
            run_loss += float(total.detach())
            if dinfo.main:
                bar.set_postfix(loss=f"{run_loss / n_batches:.3f}")
                if step % tc.log_every == 0 or n_batches == 1:
                    row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": optim.param_groups[0]["lr"],
                                           "loss": float(total.detach()), "sec_per_step": time.time() - t0,
                                           "cpu_sec_per_step": time.process_time() - c0}  # fmt: skip
                    row.update({k: float(v.detach()) for k, v in terms.items()})
                    for n, m in objective.losses().items():
                        row[f"degenerate_{n}"] = getattr(m, "degenerate_batches", 0)
                    if objective.mal_utt is not None:
                        row["mal_acc_utt"] = objective.mal_utt.last_accuracy
                    if objective.mal_phn is not None:
                        row["mal_acc_phn"] = objective.mal_phn.last_accuracy
                    assert step_log is not None
                    step_log.write(row)
            if max_steps is not None and step >= max_steps:
                done = True
                break
        bar.close()
        sched.step()
        epoch_losses.append(run_loss / max(1, n_batches))
        val: dict[str, float] = {}
        if dinfo.main and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs or done):
            t_val = time.time()
            val = validate(model, dev_store, dev_batcher, dc.val_pairs // 3, device, tc.seed)
            val["val_sec"] = time.time() - t_val
            model.train()
        if dinfo.main:
            assert epoch_log is not None
            epoch_log.write({"epoch": epoch + 1, "step": step, "train_loss": epoch_losses[-1], **val,
                             "lr": optim.param_groups[0]["lr"], "epoch_sec": time.time() - t_epoch})  # fmt: skip
            logger.info("epoch %d loss %.4f %s", epoch + 1, epoch_losses[-1], val)
            state = {
                "objective": objective.state_dict(), "model": model.state_dict(), "optimizer": optim.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch + 1, "step": step, "config": json.loads(cfg.model_dump_json()),
                "metrics": {k: round(v, 5) for k, v in val.items() if k != "val_sec"}, "best": best, "epoch_losses": epoch_losses,
                "data_summary": summary_data,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "batcher_seed": int(batcher.rng.integers(1 << 62))},
            }  # fmt: skip
            torch.save(state, last_path)
            score = (val.get("val_easy_eer", math.inf) + val.get("val_hard_eer", math.inf)) / 2
            if val and score <= best["score"]:
                best = {"score": score, "epoch": epoch + 1, **val}
                state["best"] = best
                torch.save(state, ckpt_dir / "best.pt")
        if done:
            break
    if dinfo.enabled:
        dist.barrier()
    final_epoch = len(epoch_losses)
    return TrainResult(out_dir, final_epoch, step, epoch_losses, best, last_path)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["Objective", "TrainResult", "train", "validate"]

"""Trainer: K keywords x M utterances batches, AdamW with the lr halved every N epochs, CPU or CUDA,
``torchrun`` DDP, tqdm progress, checkpoints with resume, metrics CSVs.

The objective (model + every loss) is :class:`openkws.training.objective.Objective`; validation is
:mod:`openkws.training.validation`; the data loader is :mod:`openkws.training.loader`.

Outputs in ``out_dir``: ``steps.csv`` (per logged step: every loss term, degenerate-batch counts,
MAL accuracies, lr), ``epochs.csv`` (train loss, validation EER/AUC/AP on easy and hard dev pairs,
clean and, with ``data.val_augmented``, augmented), ``checkpoints/last.pt`` and
``checkpoints/best.pt`` (lowest mean validation EER), ``config.yaml``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from openkws.training.config import Config, TrainConfig
from openkws.training.distributed import DistInfo, init_distributed, resolve_device
from openkws.training.loader.batcher import Batch
from openkws.training.loader.clips import Clip
from openkws.training.loader.feed import batch_iterator, batch_to_tensors
from openkws.training.nets.kws_model import KWSModel, build_model
from openkws.training.nets.onnx_import import import_exported
from openkws.training.objective import Objective
from openkws.training.train_data import TrainData, prepare_data
from openkws.training.validation import validate

logger = logging.getLogger("openkws.training.trainer")


# --------------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


# --------------------------------------------------------------------------------------------- run state
STEP_EXTRA = ["mal_acc_utt", "mal_acc_phn", "sec_per_step", "cpu_sec_per_step"]
EPOCH_COLS = ["epoch", "step", "train_loss", "val_easy_eer", "val_hard_eer", "val_easy_auc", "val_hard_auc",
              "val_easy_ap", "val_hard_ap", "val_aug_easy_eer", "val_aug_hard_eer", "val_score", "lr",
              "epoch_sec", "val_sec"]  # fmt: skip


@dataclass
class Run:
    cfg: Config
    out_dir: Path
    device: torch.device
    dinfo: DistInfo
    model: KWSModel
    objective: Objective
    runner: nn.Module
    optim: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.StepLR
    data: TrainData
    progress: bool
    step: int = 0
    start_epoch: int = 0
    best: dict[str, float] = field(default_factory=lambda: {"score": math.inf})
    epoch_losses: list[float] = field(default_factory=list)
    step_log: CSVLog | None = None
    epoch_log: CSVLog | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def _setup(cfg: Config, out_dir: Path, cache_workers: int, progress: bool) -> Run:
    tc = cfg.train
    device = resolve_device(tc.device)
    torch.set_num_threads(tc.threads)
    dinfo = init_distributed(device)
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
    seed_everything(tc.seed + dinfo.rank)
    if dinfo.main:
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(
            yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)
        )
    model = build_model(cfg.model)
    if tc.init_from:
        import_exported(model, tc.init_from)
        logger.info("initialised from the exported model %s", tc.init_from)
    model = model.to(device)
    data = prepare_data(cfg, model, dinfo, cache_workers, progress)
    objective = Objective(cfg, model, len(data.sampler.words)).to(device)
    optim, sched = build_optimizer(objective, tc)
    runner: nn.Module = objective
    if dinfo.enabled:
        runner = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[dinfo.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    return Run(cfg, out_dir, device, dinfo, model, objective, runner, optim, sched, data, progress)


def _resume(run: Run, resume: bool | Path) -> None:
    path = Path(resume) if not isinstance(resume, bool) else run.ckpt_dir / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint {path} not found")
    state = torch.load(path, map_location=run.device, weights_only=False)
    run.objective.load_state_dict(state["objective"])
    run.optim.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.start_epoch, run.step, run.best = state["epoch"], state["step"], state.get("best", run.best)
    run.epoch_losses = state.get("epoch_losses", [])
    if "rng" in state:
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        run.data.batcher.rng = np.random.default_rng(state["rng"]["batcher_seed"])
    logger.info("resumed from %s at epoch %d, step %d", path, run.start_epoch, run.step)


def _open_logs(run: Run, append: bool) -> None:
    if not run.dinfo.main:
        return
    names = list(run.objective.losses())
    cols = ["epoch", "step", "lr", "loss", *names, *[f"degenerate_{n}" for n in names], *STEP_EXTRA]
    run.step_log = CSVLog(run.out_dir / "steps.csv", cols, append)
    run.epoch_log = CSVLog(run.out_dir / "epochs.csv", EPOCH_COLS, append)


# --------------------------------------------------------------------------------------------- loop
def _log_step(
    run: Run, epoch: int, total: torch.Tensor, terms: dict[str, torch.Tensor], t0: float, c0: float
) -> None:
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": run.step,
        "lr": run.optim.param_groups[0]["lr"],
        "loss": float(total.detach()),
        "sec_per_step": time.time() - t0,
        "cpu_sec_per_step": time.process_time() - c0,
    }
    row.update({k: float(v.detach()) for k, v in terms.items()})
    for n, m in run.objective.losses().items():
        row[f"degenerate_{n}"] = getattr(m, "degenerate_batches", 0)
    for name in ("mal_utt", "mal_phn"):
        m = getattr(run.objective, name)
        if m is not None:
            row[f"mal_acc_{name[4:]}"] = m.last_accuracy
    if run.step_log is not None:
        run.step_log.write(row)


def _step(run: Run, batch: Batch, total_steps: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    run.objective.set_progress(run.step / total_steps)
    total, terms = run.runner(*batch_to_tensors(batch, run.device))
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"non-finite loss at step {run.step}: { {k: float(v) for k, v in terms.items()} }"
        )
    run.optim.zero_grad(set_to_none=True)
    total.backward()
    nn.utils.clip_grad_norm_(run.objective.parameters(), run.cfg.train.grad_clip)
    run.optim.step()
    run.step += 1
    return total, terms


def _train_epoch(run: Run, epoch: int, max_steps: int | None) -> tuple[float, bool]:
    """One epoch; returns (mean loss, whether ``max_steps`` was reached)."""
    tc, data = run.cfg.train, run.data
    run.objective.train()
    data.sampler.set_epoch(epoch)
    total_steps = max(1, tc.epochs * len(data.sampler))
    bar = tqdm(
        batch_iterator(data.sampler, data.batcher, run.cfg.data.num_workers),
        desc=f"epoch {epoch + 1}/{tc.epochs}",
        unit="batch",
        total=len(data.sampler),
        disable=not (run.progress and run.dinfo.main),
        dynamic_ncols=True,
    )
    run_loss, n = 0.0, 0
    try:
        for batch in bar:
            t0, c0 = time.time(), time.process_time()
            total, terms = _step(run, batch, total_steps)
            n += 1
            run_loss += float(total.detach())
            bar.set_postfix(loss=f"{run_loss / n:.3f}")
            if run.dinfo.main and (run.step % tc.log_every == 0 or n == 1):
                _log_step(run, epoch, total, terms, t0, c0)
            if max_steps is not None and run.step >= max_steps:
                return run_loss / n, True
    finally:
        bar.close()
    return run_loss / max(1, n), False


def _validate_all(run: Run) -> dict[str, float]:
    """Validation EERs (clean and, if configured, augmented) and the selection score: their mean."""
    t_val = time.time()
    val: dict[str, float] = {}
    for prefix, batcher in run.data.dev_batchers.items():
        res = validate(
            run.model,
            run.data.dev_store,
            batcher,
            run.cfg.data.val_pairs // 3,
            run.device,
            run.cfg.train.seed,
        )
        val.update({k.replace("val_", f"val_{prefix}", 1): v for k, v in res.items()})
    eers = [v for k, v in val.items() if k.endswith("_eer")]
    if eers:
        val["val_score"] = float(np.mean(eers))
    val["val_sec"] = time.time() - t_val
    run.model.train()
    return val


def _checkpoint(run: Run, epoch: int, val: dict[str, float]) -> None:
    state = {
        "objective": run.objective.state_dict(),
        "model": run.model.state_dict(),
        "optimizer": run.optim.state_dict(),
        "scheduler": run.sched.state_dict(),
        "epoch": epoch + 1,
        "step": run.step,
        "config": json.loads(run.cfg.model_dump_json()),
        "metrics": {k: round(v, 5) for k, v in val.items() if k != "val_sec"},
        "best": run.best,
        "epoch_losses": run.epoch_losses,
        "data_summary": data_summary(run.data.train_clips),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "batcher_seed": int(run.data.batcher.rng.integers(1 << 62)),
        },
    }
    torch.save(state, run.ckpt_dir / "last.pt")
    if "val_score" in val and val["val_score"] <= run.best["score"]:
        run.best = {"score": val["val_score"], "epoch": epoch + 1, **val}
        state["best"] = run.best
        torch.save(state, run.ckpt_dir / "best.pt")


def _end_epoch(run: Run, epoch: int, loss: float, t_epoch: float, last: bool) -> None:
    run.sched.step()
    run.epoch_losses.append(loss)
    if not run.dinfo.main:
        return
    tc = run.cfg.train
    val = _validate_all(run) if (epoch + 1) % tc.val_every == 0 or last else {}
    assert run.epoch_log is not None
    run.epoch_log.write(
        {
            "epoch": epoch + 1,
            "step": run.step,
            "train_loss": loss,
            **val,
            "lr": run.optim.param_groups[0]["lr"],
            "epoch_sec": time.time() - t_epoch,
        }
    )
    logger.info("epoch %d loss %.4f %s", epoch + 1, loss, val)
    _checkpoint(run, epoch, val)


def train(
    cfg: Config,
    out_dir: Path,
    resume: bool | Path = False,
    cache_workers: int = 1,
    progress: bool = True,
    max_steps: int | None = None,
) -> TrainResult:
    """Train ``cfg``; returns a summary. ``max_steps`` stops early (timing runs, tests); 0 only
    validates the starting point."""
    run = _setup(cfg, Path(out_dir), cache_workers, progress)
    if resume:
        _resume(run, resume)
    _open_logs(run, append=bool(resume))
    if max_steps == 0 and run.dinfo.main:  # the starting point only (e.g. a model given by init_from)
        val = _validate_all(run)
        assert run.epoch_log is not None
        run.epoch_log.write({"epoch": run.start_epoch, "step": run.step, **val})
        logger.info("validation at step %d: %s", run.step, val)
        return TrainResult(
            run.out_dir, 0, run.step, [], {"score": val.get("val_score", math.inf), **val}, run.ckpt_dir
        )
    for epoch in range(run.start_epoch, cfg.train.epochs):
        t_epoch = time.time()
        loss, done = _train_epoch(run, epoch, max_steps)
        _end_epoch(run, epoch, loss, t_epoch, last=done or epoch + 1 == cfg.train.epochs)
        if done:
            break
    if run.dinfo.enabled:
        dist.barrier()
    return TrainResult(
        run.out_dir, len(run.epoch_losses), run.step, run.epoch_losses, run.best, run.ckpt_dir / "last.pt"
    )


__all__ = ["TrainResult", "build_optimizer", "train"]

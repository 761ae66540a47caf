"""The clip corpus as a second term of the stream fine-tune (issue 21, row J).

Rows S to A fitted the stream loss on ~1,500-3,500 phrases alone, and each made held-out phrases
worse at the zero-false-accept point: nothing held the windows of the thousands of other phrases in
place. This term adds, at every stream step, one batch of the training recipe's own objective (the
``robust`` AsyP keyword batch with its background windows) over a cached clip corpus, on the same
model, so the stream term reshapes the tail while the corpus keeps the phrase space.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from openkws.training.config import Config, load_config
from openkws.training.distributed import DistInfo
from openkws.training.loader.batcher import Batch
from openkws.training.loader.feed import batch_iterator, batch_to_tensors
from openkws.training.nets.kws_model import KWSModel
from openkws.training.objective import Objective
from openkws.training.train_data import TrainData, prepare_data


class CorpusTerm:
    """Endless clip batches of a training config's cache, scored by that config's objective."""

    def __init__(self, config: str | Config, model: KWSModel, seed: int = 0) -> None:
        self.cfg: Config = load_config(config) if isinstance(config, str) else config
        if self.cfg.model.model_dump() != model.cfg.model_dump():
            raise ValueError(
                f"--corpus {self.cfg.name}: its model section differs from the model being fine-tuned; "
                "use a config whose `model:` matches the stream fit's base config"
            )
        # the cache must be built beforehand (`openkws train cache --config <config>`): no workers here
        self.data: TrainData = prepare_data(self.cfg, model, DistInfo(), workers=0, progress=False)
        self.objective = Objective(self.cfg, model, len(self.data.sampler.words))
        self.epoch = seed
        self._batches: Iterator[Batch] = iter(())

    @property
    def clips(self) -> int:
        return len(self.data.train_clips)

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """The objective's own trainable parameters (loss heads), not the shared model's."""
        shared = {id(p) for p in self.objective.model.parameters()}
        return [p for p in self.objective.parameters() if id(p) not in shared]

    def _next_batch(self) -> Batch:
        for _ in range(2):
            try:
                return next(self._batches)
            except StopIteration:
                self.data.sampler.set_epoch(self.epoch)
                self.epoch += 1
                self._batches = batch_iterator(self.data.sampler, self.data.batcher, 0)
        raise RuntimeError("the corpus sampler yields no batches: too few cached clips per keyword")

    def loss(self, progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """One clip batch's total loss (differentiable) and its terms."""
        self.objective.set_progress(progress)
        total, terms = self.objective(*batch_to_tensors(self._next_batch(), torch.device("cpu")))
        return total, {f"clip_{k}": float(v.detach()) for k, v in terms.items()}


def corpus_manifest(manifest: Path, out: Path, exclude: set[str]) -> tuple[int, int]:
    """Copy a synthesis manifest without the train clips whose text is in ``exclude`` (the stream
    set's validation targets, so row J never trains on the phrases it is judged on); returns (kept,
    dropped)."""
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        if not {"path", "text", "split"} <= set(fields):
            raise ValueError(f"{manifest}: expected a synthesis manifest with path,text,split columns")
        rows = list(reader)
    keep = [r for r in rows if not (r["split"] == "train" and r["text"] in exclude)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        # clip paths stay valid: relative ones are made relative to the new manifest's folder
        for r in keep:
            p = Path(r["path"])
            if not p.is_absolute():
                r["path"] = os.path.relpath(manifest.parent / p, out.parent)
            w.writerow(r)
    return len(keep), len(rows) - len(keep)

"""Fine-tune the shipped model on streams (row S), with negatives mined from a phrase bank (row M).

Starts from an exported model's weights (``init_from``), keeps BatchNorm statistics frozen (a
batch is a few streams: batch statistics would be noise), and trains the acoustic frame encoder,
the pooling head and the text encoder on :mod:`.objective`. Checkpoints use the trainer's format
(``model``, ``config``, ``epoch``, ``metrics``), so ``openkws export --checkpoint`` exports them;
``best.pt`` is chosen on held-out-voice validation streams (:mod:`.validate`), synthetic only.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from openkws.engine.model_spec import WindowPlan
from openkws.settings import packaged_model_dir
from openkws.text.g2p import G2P
from openkws.training.config import Config, load_config
from openkws.training.nets.kws_model import KWSModel, build_model
from openkws.training.nets.onnx_import import import_exported
from openkws.training.stream_training.bank import PhraseBank, carrier_ngrams
from openkws.training.stream_training.batches import StreamSet, cut_windows, full_text, pool_windows, said
from openkws.training.stream_training.corpus import CorpusTerm
from openkws.training.stream_training.labels import contains_phrase
from openkws.training.stream_training.objective import smooth_margin, stream_loss
from openkws.training.stream_training.phrases import soundalike
from openkws.training.stream_training.render import SHARD
from openkws.training.stream_training.sources import build_sources
from openkws.training.stream_training.validate import embed_streams, stream_scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    data: Path = Path("data/stream_train")
    out: Path = Path("runs/stream_s")
    init_from: Path = field(default_factory=packaged_model_dir)
    base_config: str = "robust_full"
    steps: int = 1500
    targets_per_step: int = 16
    lr: float = 1e-4
    scale: float = 16.0
    margin: float = 0.1
    mine: bool = False  # row M: bank negatives
    bank_size: int = 50_000
    bank_k: int = 8
    bank_refresh: int = 250
    bank_ramp: float = 0.5  # share of the steps over which the bank term's weight ramps 0 -> 1
    # Background term against the bank (the shipped model's background loss, over 50k proxies
    # instead of the batch's): sampled negative windows stay below `bg_margin` against the bank
    # phrases they score highest and do not say. Without it the fine-tune sharpened the batch's
    # phrases and let windows drift towards every other phrase (docs/RESULTS.md, issue 21).
    bg_windows: int = 0
    freeze_frames: bool = False  # train the pooling head and the text encoder only
    bg_margin: float = 0.5
    bg_scale: float = 50.0
    corpus: str | None = None  # row J: a training config whose clip cache adds its objective per step
    clip_weight: float = 1.0
    val_every: int = 150
    val_streams: int = 256
    threads: int = 2
    seed: int = 0


class TextCache:
    """Phrase -> phoneme ids, and batched proxies through the model's text encoder."""

    def __init__(self) -> None:
        self.g2p = G2P()
        self.ids: dict[str, tuple[int, ...]] = {}

    def _ids(self, text: str) -> tuple[int, ...]:
        if text not in self.ids:
            self.ids[text] = tuple(self.g2p(text).ids)
        return self.ids[text]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-padded phoneme ids [B, L] and their lengths [B]."""
        seqs = [self._ids(t) for t in texts]
        lengths = torch.tensor([len(s) for s in seqs])
        ids = torch.zeros((len(seqs), int(lengths.max())), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        return ids, lengths

    def encode(self, model: KWSModel, texts: list[str]) -> torch.Tensor:
        return model.encode_text(*self.batch(texts))[0]


def _freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


class StreamFit:
    def __init__(self, fc: FitConfig) -> None:
        torch.manual_seed(fc.seed)
        torch.set_num_threads(fc.threads)
        self.fc = fc
        self.cfg: Config = load_config(fc.base_config)
        self.model = import_exported(build_model(self.cfg.model), fc.init_from)
        m = self.model
        self.plan = WindowPlan(tuple(m.windows), m.window_stride, m.context_frames)
        self.hop, self.receptive = m.feature_hop, m.feature_receptive
        self.text = TextCache()
        self.train = StreamSet.load(fc.data / "train")
        self.val = StreamSet.load(fc.data / "val")
        self.groups = self.train.by_target()
        self.targets = sorted(self.groups)
        self.rng = np.random.default_rng(fc.seed)
        trained = (m.pool, m.text) if fc.freeze_frames else (m.frames, m.pool, m.text)
        if fc.freeze_frames:
            m.frames.requires_grad_(False)
        params = [p for mod in trained for p in mod.parameters()]
        self.corpus = CorpusTerm(fc.corpus, m, fc.seed) if fc.corpus else None
        if self.corpus is not None:
            params += self.corpus.extra_parameters()
        self.opt = torch.optim.AdamW(params, lr=fc.lr, weight_decay=1e-4)
        self.step = 0
        self.best = float("inf")
        src = build_sources(fc.seed)
        self.neighbours, self.allowed = src.neighbours, src.allowed
        self.bank: PhraseBank | None = None
        if fc.mine:
            base = sorted({q for it in self.train.items for q in said(it)})
            self.bank = PhraseBank(base + carrier_ngrams(src.carriers, max(0, fc.bank_size - len(base))))
        rng = np.random.default_rng(fc.seed + 7)
        self.val_ids = sorted(
            rng.choice(len(self.val), size=min(fc.val_streams, len(self.val)), replace=False)
        )

    # --- one step ---------------------------------------------------------------------------------
    def _batch_streams(self) -> list[int]:
        picks = self.rng.choice(len(self.targets), size=self.fc.targets_per_step, replace=False)
        return [i for p in picks for i in self.groups[self.targets[int(p)]]]

    def _bank_weight(self) -> float:
        ramp = max(1.0, self.fc.bank_ramp * self.fc.steps)
        return min(1.0, self.step / ramp)

    def _masks(self, streams: list[int], wb: Any, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.train.items[i] for i in streams]
        owner = wb.stream_of.numpy()
        says = np.array([[q in said(it) for q in phrases] for it in items])  # [B, Q]
        clean = np.array([[not contains_phrase(full_text(it), q) for q in phrases] for it in items])
        pos = says[owner] & wb.positive[:, None]
        # windows of a stream that says q are negatives except its keyword-end windows; streams that
        # merely contain q's words elsewhere (carrier text) are ignored for q
        neg = (clean[owner] | says[owner]) & ~pos
        return torch.from_numpy(pos), torch.from_numpy(neg)

    def _mined_loss(
        self,
        emb: torch.Tensor,
        scores: torch.Tensor,
        best: torch.Tensor,
        phrases: list[str],
        streams: list[int],
        wb: Any,
    ) -> torch.Tensor:
        assert self.bank is not None
        rows = [(q, int(k)) for q, k in enumerate(best.tolist()) if k >= 0]
        if not rows:
            return emb.new_zeros(())
        owner = wb.stream_of.numpy()
        texts = [full_text(self.train.items[streams[owner[k]]]) for _, k in rows]
        anchors = emb[[k for _, k in rows]]
        mined = self.bank.mine(anchors.detach().numpy(), texts, [phrases[q] for q, _ in rows], self.fc.bank_k)
        for j, (q, _) in enumerate(rows):  # the phrase's own sound-alikes too, when it has some
            alike = soundalike(phrases[q], self.neighbours, self.rng, self.allowed)
            if alike and not contains_phrase(texts[j], alike):
                mined[j].append(alike)
        flat = sorted({p for m in mined for p in m})
        if not flat:
            return emb.new_zeros(())
        where = {p: i for i, p in enumerate(flat)}
        prox = self.text.encode(self.model, flat)
        losses = []
        for j, (q, k) in enumerate(rows):
            if mined[j]:
                s_neg = anchors[j] @ prox[[where[p] for p in mined[j]]].T
                losses.append(smooth_margin(scores[k, q], s_neg, self.fc.scale, self.fc.margin))
        return torch.stack(losses).mean() if losses else emb.new_zeros(())

    def _background_loss(
        self, emb: torch.Tensor, neg: torch.Tensor, streams: list[int], wb: Any
    ) -> torch.Tensor:
        assert self.bank is not None
        rows = np.flatnonzero(neg.any(dim=1).numpy())
        rows = self.rng.choice(rows, size=min(self.fc.bg_windows, len(rows)), replace=False)
        owner = wb.stream_of.numpy()
        texts = [full_text(self.train.items[streams[owner[r]]]) for r in rows]
        # a window at its own phrase's end says that phrase: never its negative
        own = [self.train.items[streams[owner[r]]].spoken for r in rows]
        mined = self.bank.mine(emb[rows].detach().numpy(), texts, own, self.fc.bank_k)
        flat = sorted({p for m in mined for p in m})
        if not flat:
            return emb.new_zeros(())
        where = {p: i for i, p in enumerate(flat)}
        prox = self.text.encode(self.model, flat)
        losses = []
        for j, r in enumerate(rows):
            if mined[j]:
                s = emb[int(r)] @ prox[[where[p] for p in mined[j]]].T
                z = self.fc.bg_scale * (s - self.fc.bg_margin)
                losses.append(torch.nn.functional.softplus(torch.logsumexp(z, dim=0)) / self.fc.bg_scale)
        return torch.stack(losses).mean() if losses else emb.new_zeros(())

    def train_step(self) -> dict[str, float]:
        self.model.train()
        _freeze_bn(self.model)
        streams = self._batch_streams()
        wb = cut_windows(self.train, streams, self.plan, self.hop, self.receptive, self.rng)
        emb = pool_windows(self.model, wb)
        phrases = sorted(
            {q for i in streams for q in (*said(self.train.items[i]), self.train.items[i].target)}
        )
        proxies = self.text.encode(self.model, phrases)
        scores = emb @ proxies.T
        pos, neg = self._masks(streams, wb, phrases)
        loss_s, best = stream_loss(scores, pos, neg, self.fc.scale, self.fc.margin)
        loss_m = emb.new_zeros(())
        if self.bank is not None:
            loss_m = self._mined_loss(emb, scores, best, phrases, streams, wb)
        loss_bg = emb.new_zeros(())
        if self.bank is not None and self.fc.bg_windows > 0:
            loss_bg = self._background_loss(emb, neg, streams, wb)
        loss = loss_s + self._bank_weight() * loss_m + loss_bg
        loss_c = emb.new_zeros(())
        if self.corpus is not None:
            loss_c, _ = self.corpus.loss(self.step / self.fc.steps)
            loss = loss + self.fc.clip_weight * loss_c
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.step += 1
        return {
            "loss": float(loss.detach()),
            "loss_stream": float(loss_s.detach()),
            "loss_bank": float(loss_m.detach()),
            "loss_bg": float(loss_bg.detach()),
            "loss_clip": float(loss_c.detach()),
            "windows": len(wb.positive),
        }

    def reload(self) -> int:
        """Pick up shards the renderer finished since the start (training may begin on a prefix)."""
        n = len(sorted((self.fc.data / "train").glob("shard_*[0-9].npz")))
        if n * SHARD <= len(self.train):
            return 0
        before = len(self.train)
        self.train = StreamSet.load(self.fc.data / "train")
        self.groups = self.train.by_target()
        self.targets = sorted(self.groups)
        return len(self.train) - before

    # --- validation, checkpoints ------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        emb, owner, end = embed_streams(
            self.model, self.val, self.val_ids, self.plan, self.hop, self.receptive
        )
        phrases = sorted({q for i in self.val_ids for q in said(self.val.items[i])})
        proxies = torch.cat(
            [self.text.encode(self.model, phrases[k : k + 512]) for k in range(0, len(phrases), 512)]
        )
        return stream_scores(emb, owner, end, proxies.numpy(), phrases, self.val).as_dict()

    @torch.no_grad()
    def refresh_bank(self) -> None:
        if self.bank is not None:
            self.model.eval()

            def enc(texts: list[str]) -> np.ndarray:
                chunks = [
                    self.text.encode(self.model, texts[k : k + 2048]) for k in range(0, len(texts), 2048)
                ]
                return torch.cat(chunks).numpy()

            self.bank.refresh(enc)

    def save(self, name: str, metrics: dict[str, float]) -> Path:
        path = self.fc.out / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "config": self.cfg.model_dump(mode="json"),
            "epoch": self.step,
            "metrics": metrics,
            "optimizer": self.opt.state_dict(),
            "fit": {k: str(v) for k, v in asdict(self.fc).items()},
            "data_summary": {
                "clips": len(self.train),
                "words": len(self.groups),
                "engines": ["espeak", "flite"],
            },
        }
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
        return path

    def resume(self) -> None:
        last = self.fc.out / "checkpoints" / "last.pt"
        if last.exists():
            state = torch.load(last, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.step = int(state["epoch"])
            self.best = float(state["metrics"].get("best_val_frr", self.best))
            self.rng = np.random.default_rng(self.fc.seed + self.step)
            logger.info("resumed at step %d", self.step)


def fit(fc: FitConfig, resume: bool = True) -> Path:
    """Run (or resume) the fine-tune; returns the best checkpoint's path."""
    run = StreamFit(fc)
    if resume:
        run.resume()
    fc.out.mkdir(parents=True, exist_ok=True)
    log_path = fc.out / "log.csv"
    new = not log_path.exists()
    with open(log_path, "a", newline="") as f:
        log = csv.writer(f)
        if new:
            log.writerow(
                [
                    "step",
                    "seconds",
                    "loss",
                    "loss_stream",
                    "loss_bank",
                    "loss_bg",
                    "bank_weight",
                    "val_frr",
                    "val_tail_share",
                    "loss_clip",
                ]
            )
        if run.step == 0:
            val = run.validate()
            run.best = val["val_frr"]
            run.save("best.pt", {**val, "best_val_frr": run.best})
            log.writerow([0, 0, "", "", "", "", "", val["val_frr"], val["val_tail_share"], ""])
            tqdm.write(
                f"step 0 (the initial model): val FRR {val['val_frr']:.3f}, tail share {val['val_tail_share']:.4f}"
            )
        bar = tqdm(total=fc.steps, initial=run.step, unit="step", desc="stream fit")
        t0, acc = time.time(), []
        while run.step < fc.steps:
            if run.bank is not None and (run.bank.index is None or run.step % fc.bank_refresh == 0):
                run.refresh_bank()
            acc.append(run.train_step())
            bar.update(1)
            bar.set_postfix(loss=f"{acc[-1]['loss']:.3f}")
            if run.step % fc.val_every == 0 or run.step == fc.steps:
                added = run.reload()
                if added:
                    tqdm.write(f"step {run.step}: {added} more training streams (now {len(run.train)})")
                val = run.validate()
                mean = {k: float(np.mean([a[k] for a in acc])) for k in acc[0]}
                if val["val_frr"] < run.best:
                    run.best = val["val_frr"]
                    run.save("best.pt", {**val, "best_val_frr": run.best})
                run.save("last.pt", {**val, "best_val_frr": run.best})
                log.writerow(
                    [
                        run.step,
                        round(time.time() - t0, 1),
                        mean["loss"],
                        mean["loss_stream"],
                        mean["loss_bank"],
                        mean["loss_bg"],
                        run._bank_weight(),
                        val["val_frr"],
                        val["val_tail_share"],
                        mean["loss_clip"],
                    ]
                )
                f.flush()
                tqdm.write(
                    f"step {run.step}: loss {mean['loss']:.4f}, val FRR {val['val_frr']:.3f} (best {run.best:.3f}), tail {val['val_tail_share']:.4f}"
                )
                acc = []
        bar.close()
    return fc.out / "checkpoints" / "best.pt"

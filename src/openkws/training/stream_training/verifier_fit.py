"""Train and validate the row-V verifier (:mod:`.verifier`) on the TTS stream set.

1. The stage-1 model (an exported model, frozen) encodes every stream once: its frame keys (the
   frame projection it aligns phonemes with) and every window's stage-1 score against the set's
   phrases, maximised over the window lengths that end at the same frame.
2. Candidates are (stream, end frame, phrase) with a stage-1 score at or above ``candidate``:
   positives are keyword-end positions of a phrase the stream says (all of them, so the recall of
   the candidate threshold can be reported); negatives are candidates of phrases the stream does
   not say (traps included) and of its own phrase far from its end. Positions from 0.3 s before
   to 0.6 s after a said phrase's end that are not keyword-end are left out (the validation's hit
   zone: neither label is honest there).
3. Validation on held-out voices scores each window with the verifier when stage 1 passes the
   candidate threshold, and below every candidate otherwise, and reports FRR at each phrase's
   zero-false-accept threshold, as :mod:`.validate` does for stage 1. The step count is fixed
   in advance: validation chooses nothing.

Synthetic speech only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.engine.model_spec import WindowPlan
from openkws.settings import packaged_model_dir
from openkws.training.config import load_config
from openkws.training.nets.kws_model import KWSModel, build_model
from openkws.training.nets.onnx_import import import_exported
from openkws.training.stream_training.batches import StreamSet, cut_windows, full_text, pool_windows, said
from openkws.training.stream_training.labels import contains_phrase, is_keyword_end
from openkws.training.stream_training.trainer import TextCache
from openkws.training.stream_training.validate import HIT_AFTER_S, HIT_BEFORE_S, ValResult, frr_at_zero_fa
from openkws.training.stream_training.verifier import Matcher, phone_labels, window_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierConfig:
    data: Path = Path("data/stream_train2")
    out: Path = Path("runs/verifier")
    init_from: Path = field(default_factory=packaged_model_dir)
    base_config: str = "robust_full"
    candidate: float = 0.45  # stage-1 candidate threshold
    negatives_per_stream: int = 64  # negative candidates kept per training stream (half the hardest)
    steps: int = 4000
    batch: int = 256
    positive_share: float = 0.25
    lr: float = 1e-3
    phone_weight: float = 0.5
    dim: int = 128
    heads: int = 4
    threads: int = 2
    seed: int = 0
    limit: int = 0  # use only the first `limit` streams of each split (0: all; for a quick check)
    evaluate_only: bool = False  # validate <out>/verifier.pt, no training


@dataclass
class Encoded:
    """One stream set through the frozen stage-1 model."""

    keys: list[np.ndarray]  # float16 [T', K] per stream
    end_stream: np.ndarray  # [E] stream of each end position
    end_frame: np.ndarray  # [E]
    end_sample: np.ndarray  # [E]
    scores: np.ndarray  # float16 [E, Q] stage-1, max over the windows ending there ([E, 0] once mined)

    @classmethod
    def merge(cls, parts: list[Encoded]) -> Encoded:
        cat = np.concatenate
        return cls(
            [k for p in parts for k in p.keys],
            cat([p.end_stream for p in parts]),
            cat([p.end_frame for p in parts]),
            cat([p.end_sample for p in parts]),
            np.zeros((sum(len(p.end_stream) for p in parts), 0), np.float16),
        )


@torch.no_grad()
def encode_set(
    model: KWSModel, data: StreamSet, plan: WindowPlan, proxies: torch.Tensor, streams: range
) -> Encoded:
    """Streams ``streams`` of ``data`` (their indices stay global in ``end_stream``)."""
    hop, receptive, c = model.feature_hop, model.feature_receptive, model.cfg.acoustic.mfa_channels
    keys: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {"stream": [], "frame": [], "sample": [], "scores": []}
    for k in range(streams.start, streams.stop, 16):
        chunk = list(range(k, min(k + 16, streams.stop)))
        wb = cut_windows(data, chunk, plan, hop, receptive, rng=None)
        frames = model.frames(wb.features)
        proj = model.frame_proj(frames[..., :c])
        for b, i in enumerate(chunk):
            keys.append(proj[b, : len(data.features[i]) - plan.context].half().numpy())
        s = pool_windows(model, wb, frames) @ proxies.T  # [rows, Q]
        owner = np.asarray(chunk)[wb.stream_of.numpy()]
        key = owner.astype(np.int64) * 1_000_000_000 + wb.end_sample
        uniq, inv = np.unique(key, return_inverse=True)
        best = torch.full((len(uniq), s.shape[1]), -2.0).scatter_reduce(
            0, torch.from_numpy(inv)[:, None].expand(-1, s.shape[1]), s, "amax"
        )
        cols["stream"].append((uniq // 1_000_000_000).astype(np.int32))
        cols["sample"].append(uniq % 1_000_000_000)
        cols["frame"].append(((uniq % 1_000_000_000 - receptive) // hop).astype(np.int32))
        cols["scores"].append(best.half().numpy())
    return Encoded(
        keys,
        np.concatenate(cols["stream"]),
        np.concatenate(cols["frame"]),
        np.concatenate(cols["sample"]),
        np.concatenate(cols["scores"]),
    )


@dataclass
class Candidates:
    end: np.ndarray  # [N] row of Encoded's end arrays
    phrase: np.ndarray  # [N]
    label: np.ndarray  # [N] 1 / 0
    stage1: np.ndarray  # [N]
    phones: list[np.ndarray | None]  # per-phoneme labels when known


def mine_candidates(
    enc: Encoded, data: StreamSet, phrases: list[str], ids: list[tuple[int, ...]], vc: VerifierConfig
) -> Candidates:
    index = {q: j for j, q in enumerate(phrases)}
    out_end, out_q, out_y, out_ph = [], [], [], []
    first = int(enc.end_stream[0])
    starts = np.searchsorted(enc.end_stream, np.arange(first, int(enc.end_stream[-1]) + 2))
    for i in range(first, int(enc.end_stream[-1]) + 1):
        rows = np.arange(starts[i - first], starts[i - first + 1])
        item, text = data.items[i], full_text(data.items[i])
        lag = enc.end_sample[rows] - int(data.phrase_end[i])
        near = (lag >= -HIT_BEFORE_S * SAMPLE_RATE) & (lag <= HIT_AFTER_S * SAMPLE_RATE)
        kw_end = is_keyword_end(enc.end_sample[rows], int(data.phrase_end[i]))
        s = enc.scores[rows].astype(np.float32)
        own = [index[q] for q in said(item) if q in index]
        for q in own:
            for r in rows[kw_end]:
                out_end.append(r), out_q.append(q), out_y.append(1.0)
                out_ph.append(np.ones(len(ids[q]), np.float32))
        clean = np.array([not contains_phrase(text, q) for q in phrases])
        allowed = np.repeat(clean[None, :], len(rows), axis=0)
        allowed[:, own] = ~near[:, None]  # own phrase: negatives only far from its end
        cand = np.argwhere(allowed & (s >= vc.candidate))
        if len(cand) > vc.negatives_per_stream:
            # half the hardest, half drawn from the rest: a verifier shown only the hardest never
            # learns that a barely-passing window is a negative (the first run scored those highest)
            order = np.argsort(-s[cand[:, 0], cand[:, 1]])
            half = vc.negatives_per_stream // 2
            rest = np.random.default_rng(i).choice(
                order[half:], vc.negatives_per_stream - half, replace=False
            )
            cand = cand[np.concatenate([order[:half], rest])]
        spoken = ids[index[item.spoken]] if item.spoken in index else None
        for r, q in cand:
            out_end.append(rows[r]), out_q.append(q), out_y.append(0.0)
            # a trap said where its target would be: which of the target's phonemes it changes
            trap = item.kind not in ("pos", "repeat") and phrases[q] == item.target and near[r]
            out_ph.append(phone_labels(ids[q], spoken) if trap and spoken is not None else None)
    end, q = np.asarray(out_end, np.int64), np.asarray(out_q, np.int64)
    s1 = enc.scores[end, q].astype(np.float32)
    return Candidates(end, q, np.asarray(out_y, np.float32), s1, out_ph)


def encode_and_mine(
    model: KWSModel,
    data: StreamSet,
    plan: WindowPlan,
    proxies: torch.Tensor,
    phrases: list[str],
    ids: list[tuple[int, ...]],
    vc: VerifierConfig,
) -> tuple[Encoded, Candidates]:
    """The training set, 512 streams at a time: only the candidates keep their stage-1 scores
    (all end positions against every phrase would not fit in memory)."""
    parts: list[Encoded] = []
    cands: list[Candidates] = []
    offset = 0
    for lo in tqdm(range(0, len(data), 512), desc="stage 1 + candidates (x512 streams)"):
        enc = encode_set(model, data, plan, proxies, range(lo, min(lo + 512, len(data))))
        c = mine_candidates(enc, data, phrases, ids, vc)
        c.end += offset
        offset += len(enc.end_stream)
        parts.append(enc)
        cands.append(c)
    merged = Candidates(
        *(np.concatenate([getattr(c, f) for c in cands]) for f in ("end", "phrase", "label", "stage1")),
        [p for c in cands for p in c.phones],
    )
    return Encoded.merge(parts), merged


class Batcher:
    """Candidates -> padded tensors for :class:`Matcher`."""

    def __init__(self, enc: Encoded, phn: list[torch.Tensor], plan: WindowPlan) -> None:
        self.enc, self.phn, self.plan = enc, phn, plan
        self.longest = max(plan.windows)
        self.width = self.longest - plan.context

    def __call__(self, ends: np.ndarray, qs: np.ndarray, s1: np.ndarray) -> tuple[torch.Tensor, ...]:
        keys = np.zeros((len(ends), self.width, self.enc.keys[0].shape[1]), np.float32)
        kmask = np.zeros((len(ends), self.width), np.float32)
        for b, e in enumerate(ends):
            w = window_keys(
                self.enc.keys[self.enc.end_stream[e]],
                int(self.enc.end_frame[e]),
                self.longest,
                self.plan.context,
            )
            keys[b, self.width - len(w) :] = w  # right-aligned: the last frame is the window's end
            kmask[b, self.width - len(w) :] = 1.0
        lmax = max(len(self.phn[q]) for q in qs)
        phn = torch.zeros((len(qs), lmax, self.phn[0].shape[1]))
        pmask = torch.zeros((len(qs), lmax))
        for b, q in enumerate(qs):
            phn[b, : len(self.phn[q])] = self.phn[q]
            pmask[b, : len(self.phn[q])] = 1.0
        stage1 = torch.from_numpy(np.asarray(s1, np.float32))
        return torch.from_numpy(keys), torch.from_numpy(kmask), phn, pmask, stage1


@torch.no_grad()
def phoneme_states(model: KWSModel, text: TextCache, phrases: list[str]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for k in range(0, len(phrases), 256):
        ids, lengths = text.batch(phrases[k : k + 256])
        _, phn = model.encode_text(ids, lengths)
        out += [phn[i, : int(n)].clone() for i, n in enumerate(lengths)]
    return out


@torch.no_grad()
def verified_scores(matcher: Matcher, enc: Encoded, batcher: Batcher, candidate: float) -> np.ndarray:
    """[E, Q]: the verifier's logit where stage 1 passes ``candidate``, and stage 1 minus 1000
    (below every candidate) elsewhere. Logits, not probabilities: over millions of candidates
    float32 sigmoids saturate at 1.0, and ties at the top count as misses."""
    s1 = enc.scores.astype(np.float32)
    out = s1.astype(np.float64) - 1000.0
    ends, qs = np.nonzero(s1 >= candidate)
    for k in tqdm(range(0, len(ends), 4096), desc="verifying candidates", unit="x4096"):
        e, q = ends[k : k + 4096], qs[k : k + 4096]
        logit, _ = matcher(*batcher(e, q, s1[e, q]))
        out[e, q] = logit.double().numpy()
    return out


def run(vc: VerifierConfig) -> dict[str, object]:
    torch.manual_seed(vc.seed)
    torch.set_num_threads(vc.threads)
    vc.out.mkdir(parents=True, exist_ok=True)
    model = import_exported(build_model(load_config(vc.base_config).model), vc.init_from).eval()
    plan = WindowPlan(tuple(model.windows), model.window_stride, model.context_frames)
    text = TextCache()
    sets = {name: _first(StreamSet.load(vc.data / name), vc.limit) for name in ("train", "val")}
    report: dict[str, object] = {"config": {k: str(v) for k, v in asdict(vc).items()}}

    def phrases_of(data: StreamSet) -> tuple[list[str], torch.Tensor, list[torch.Tensor]]:
        phrases = sorted({q for it in data.items for q in (*said(it), it.target)})
        with torch.no_grad():
            prox = torch.cat([text.encode(model, phrases[k : k + 512]) for k in range(0, len(phrases), 512)])
        return phrases, prox, phoneme_states(model, text, phrases)

    phrases_v, prox_v, phn_v = phrases_of(sets["val"])
    enc_v = encode_set(model, sets["val"], plan, prox_v, range(len(sets["val"])))
    matcher = Matcher(phn_v[0].shape[1], vc.dim, vc.heads, max_frames=max(plan.windows))
    if vc.evaluate_only:
        state = torch.load(vc.out / "verifier.pt", map_location="cpu", weights_only=False)  # our own run
        matcher.load_state_dict(state["matcher"])
        before = json.loads((vc.out / "report.json").read_text())
        report["train"], report["log"] = before.get("train", {}), before.get("log", [])
    else:
        report["train"], report["log"] = _train(matcher, model, plan, text, sets["train"], vc, phrases_of)
        torch.save({"matcher": matcher.state_dict(), "config": report["config"]}, vc.out / "verifier.pt")
    matcher.eval()
    args = (enc_v.end_stream, enc_v.end_sample, phrases_v, sets["val"])
    base = frr_at_zero_fa(enc_v.scores.astype(np.float32), *args)
    t1 = time.monotonic()
    combined = verified_scores(matcher, enc_v, Batcher(enc_v, phn_v, plan), vc.candidate)
    verify_s = time.monotonic() - t1
    n_cand = int((enc_v.scores >= vc.candidate).sum())
    after = frr_at_zero_fa(combined, *args)
    report["val"] = {
        "stage1": _row(base),
        "stage1+verifier": _row(after),
        "candidates": n_cand,
        "pairs": int(enc_v.scores.size),
        "verifier_seconds": round(verify_s, 2),
        "ms_per_candidate": round(1000 * verify_s / max(1, n_cand), 4),
    }
    (vc.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _train(
    matcher: Matcher,
    model: KWSModel,
    plan: WindowPlan,
    text: TextCache,
    data: StreamSet,
    vc: VerifierConfig,
    phrases_of: Any,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    phrases, prox, phn = phrases_of(data)
    ids = [text._ids(p) for p in phrases]
    enc, cands = encode_and_mine(model, data, plan, prox, phrases, ids, vc)
    pos, neg = np.flatnonzero(cands.label == 1), np.flatnonzero(cands.label == 0)
    recall = float((cands.stage1[pos] >= vc.candidate).mean())
    logger.info("%d positive and %d negative candidates; candidate recall %.3f", len(pos), len(neg), recall)
    stats: dict[str, float] = {
        "positives": len(pos),
        "negatives": len(neg),
        "positive_recall_at_candidate": recall,
    }
    opt = torch.optim.AdamW(matcher.parameters(), lr=vc.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, vc.lr, total_steps=vc.steps, pct_start=0.1)
    batcher = Batcher(enc, phn, plan)
    rng = np.random.default_rng(vc.seed)
    n_pos = int(vc.batch * vc.positive_share)
    t0, log = time.monotonic(), []
    for step in tqdm(range(vc.steps), desc="verifier", unit="step"):
        pick = np.concatenate([rng.choice(pos, n_pos), rng.choice(neg, vc.batch - n_pos)])
        keys, kmask, p, pmask, s1 = batcher(cands.end[pick], cands.phrase[pick], cands.stage1[pick])
        logit, per_phone = matcher(keys, kmask, p, pmask, s1)
        y = torch.from_numpy(cands.label[pick])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        known = [j for j, b in enumerate(pick) if cands.phones[b] is not None]
        if known:
            lab = torch.zeros_like(pmask)
            for j in known:
                ph = cands.phones[pick[j]]
                assert ph is not None
                lab[j, : len(ph)] = torch.from_numpy(ph)
            m = pmask[known]
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                per_phone[known], lab[known], reduction="none"
            )
            loss = loss + vc.phone_weight * (bce * m).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0:
            log.append({"step": step, "loss": float(loss.detach())})
    stats["seconds"] = round(time.monotonic() - t0, 1)
    return stats, log


def _row(r: ValResult) -> dict[str, float]:
    return {"frr": round(r.frr, 4), "tail_share": round(r.tail_share, 5), "phrases": r.phrases}


def _first(data: StreamSet, n: int) -> StreamSet:
    return data if n <= 0 else StreamSet(data.features[:n], data.phrase_end[:n], data.items[:n])

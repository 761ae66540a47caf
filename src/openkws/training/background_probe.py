"""Background false-alarm probe: how often held-out running speech and cut keyword phrases reach
the detector's threshold against the evaluation keywords, next to how often the keywords do.

A cheap stand-in for a stream evaluation when none is at hand, on synthetic held-out data only
(the ``test`` split: unseen words, held-out voices):

- *running speech*: ``sequences`` concatenations of 4 test clips whose words contain no
  evaluation keyword, 0.1-0.3 s pauses;
- *partials*: each multi-word keyword clip cut inside its speech (a prefix or a suffix);
- *keywords*: each keyword clip whole.

Each is padded with 0.5 s of silence, every detector window is embedded (the exported model's
windows and stride), and an item's score for a keyword is its best window's cosine with that
keyword's text proxy. Reported: the share of (running-speech sequence, keyword) pairs at or over
``threshold``, of partials over it for their own keyword, and of keyword clips over it; and the
keyword hit rate at the threshold where 1% of the running-speech pairs fire.

Usage: ``openkws eval background-probe --model DIR --manifest CSV [--threshold 0.65]``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from openkws.constants import SAMPLE_RATE
from openkws.text import load_inventory
from openkws.training.config import Config
from openkws.training.data.audio import read_wav
from openkws.training.data.keywords import evaluation_keywords
from openkws.training.loader.background import contains_words
from openkws.training.loader.clips import Clip, read_manifest
from openkws.training.loader.renditions import partial_cut
from openkws.training.nets.frontend import feature_extractor
from openkws.training.nets.kws_model import KWSModel, build_model
from openkws.training.nets.onnx_import import import_exported
from openkws.training.validation import batch_window_embeddings

PAD_S = 0.5
CHUNK = 32


def load_exported(model_dir: Path) -> KWSModel:
    """An exported model directory as a torch model (geometry from its recipe, weights from ONNX)."""
    spec = json.loads((model_dir / "model.json").read_text())
    cfg = Config.model_validate(spec["recipe"]["config"])
    return import_exported(build_model(cfg.model), model_dir).eval()


Items = tuple[
    list[np.ndarray], list[np.ndarray], list[int], list[np.ndarray], list[int], list[tuple[int, ...]]
]


def _items(clips: list[Clip], sequences: int, seed: int) -> Items:
    """(running-speech audio, partial audio, their keyword index, keyword audio, its index, keywords)."""
    rng = np.random.default_rng(seed)
    boundary = load_inventory().encode(["|"])[0]
    keywords = sorted({c.phoneme_ids for c in clips if c.text in set(evaluation_keywords())})
    kw_index = {k: i for i, k in enumerate(keywords)}
    others = [c for c in clips if not any(contains_words(c.phoneme_ids, k, boundary) for k in keywords)]
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), np.float32)
    running = []
    for _ in range(sequences):
        parts = [pad]
        for j in rng.choice(len(others), 4, replace=False):
            parts += [
                read_wav(others[int(j)].path),
                np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE), np.float32),
            ]
        running.append(np.concatenate([*parts, pad]))
    partials, p_idx, whole, w_idx = [], [], [], []
    for c in clips:
        if c.phoneme_ids not in kw_index:
            continue
        wave = read_wav(c.path)
        whole.append(np.concatenate([pad, wave, pad]))
        w_idx.append(kw_index[c.phoneme_ids])
        if boundary in c.phoneme_ids:
            partials.append(np.concatenate([pad, partial_cut(wave, rng), pad]))
            p_idx.append(kw_index[c.phoneme_ids])
    return running, partials, p_idx, whole, w_idx, keywords


@torch.no_grad()
def _best_scores(model: KWSModel, audio: list[np.ndarray], proxies: torch.Tensor) -> np.ndarray:
    """[items, keywords]: each item's best window cosine per keyword."""
    fx = feature_extractor("speech_embedding", threads=1)
    out = []
    for i in range(0, len(audio), CHUNK):
        feats = [fx.features(a) for a in audio[i : i + CHUNK]]
        for emb in batch_window_embeddings(model, feats, torch.device("cpu")):
            out.append((emb @ proxies.T).max(dim=0).values.numpy())
    return np.array(out)


def probe(
    model_dir: Path, manifest: Path, threshold: float, sequences: int = 200, seed: int = 0
) -> dict[str, float]:
    clips = read_manifest(manifest, splits=("test",))
    running, partials, p_idx, whole, w_idx, keywords = _items(clips, sequences, seed)
    model = load_exported(model_dir)
    ids = [torch.tensor(k) for k in keywords]
    padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    proxies = model.text(padded, torch.tensor([len(k) for k in keywords]))
    bg = _best_scores(model, running, proxies)
    part = _best_scores(model, partials, proxies)[np.arange(len(p_idx)), p_idx]
    pos = _best_scores(model, whole, proxies)[np.arange(len(w_idx)), w_idx]
    theta_1pct = float(np.quantile(bg, 0.99))
    return {
        "keywords": len(keywords),
        "running_sequences": len(running),
        "partials": len(partials),
        "keyword_clips": len(whole),
        "threshold": threshold,
        "running_fire_rate": float((bg >= threshold).mean()),
        "partial_fire_rate": float((part >= threshold).mean()),
        "keyword_hit_rate": float((pos >= threshold).mean()),
        "threshold_at_1pct_running": theta_1pct,
        "keyword_hit_rate_at_1pct_running": float((pos >= theta_1pct).mean()),
        "partial_fire_rate_at_1pct_running": float((part >= theta_1pct).mean()),
    }

"""The pairs protocol (LibriPhrase style): EER / ROC-AUC / AP on (clip, text) pairs, easy and hard.

Pairs come from the project's one builder (:func:`openkws.training.evaluate.make_pairs`), with
negatives drawn from every text of the evaluated set (also when its clips are subsampled); manifests,
metrics and plots are the model engineer's (:mod:`openkws.training.evaluate`: ``read_eval_manifest``,
``pair_metrics``, ``pad_eval``, ``plot_curves``). This module only scores the pairs with each system.

Systems and their pair score:

* openkws: the engine's best cosine between any detector window of the (padded) clip and the text;
* openkws-tts: the same against the keyword's acoustic proxy (the service's ``proxy: "tts"``);
* pocketsphinx: the keyphrase's best margin over the phone loop in the clip (log10 per phone);
* EfficientWord-Net: best window confidence against 4 templates of the text synthesized by
  held-out voices (audio enrollment is all it has);
* openWakeWord cannot score arbitrary text and is not in this protocol.
"""

from __future__ import annotations

import csv
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.datasets import make_templates
from bench.detectors import make_detector
from openkws.text import G2P, load_inventory
from openkws.training.data.tts import synthesize
from openkws.training.evaluate import (
    Pair,
    load_eval_audio,
    make_pairs,
    pad_eval,
    pair_metrics,
    plot_curves,
    read_eval_manifest,
)

log = logging.getLogger("bench.pairs")
PAIR_SYSTEMS = ("openkws", "openkws-tts", "pocketsphinx", "efficientword")


def smoke_manifest(out_dir: Path, texts: list[str], voices: list[str], seed: int = 3) -> Path:
    """A tiny clip manifest (``path,text``) for quick runs: each text by each voice."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.csv"
    if manifest.is_file():
        return manifest
    rows = []
    for i, t in enumerate(texts):
        for j, v in enumerate(voices):
            name = f"clip_{i:03d}_{j}.wav"
            sf.write(str(out_dir / name), synthesize(t, v, seed=seed), 16_000, subtype="PCM_16")
            rows.append((name, t))
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text"])
        w.writerows(rows)
    return manifest


def build_pairs(
    clips: list[Any], g2p: Any, inv: Any, seed: int, candidates: list[str] | None = None
) -> list[Any]:
    """The project's pairs (:func:`openkws.training.evaluate.make_pairs`, one builder) on the clips,
    with negatives drawn from ``candidates`` (default: the clips' own texts)."""
    texts = [c.text for c in clips]
    pool = sorted(set(texts) | set(candidates or []))
    phonemes = {t: tuple(inv.encode(list(g2p(t).phones_only))) for t in pool}
    return make_pairs(texts, phonemes, seed, pool)


def run_pairs(
    system: str,
    manifest: Path,
    options: dict[str, Any],
    template_voices: list[str],
    max_clips: int | None,
    seed: int = 0,
    split: str | None = None,
) -> dict[str, Any]:
    """Score every pair of ``manifest`` with ``system``; returns metrics and the raw scores."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t_start = time.perf_counter()
    clips = read_eval_manifest(manifest, split)
    if not clips:
        raise ValueError(f"no clips in {manifest}" + (f" with split={split}" if split else ""))
    vocabulary = sorted({c.text for c in clips})  # negatives come from every text of the set
    if max_clips is not None and len(clips) > max_clips:
        rng = np.random.default_rng(seed)
        clips = [clips[i] for i in sorted(rng.choice(len(clips), max_clips, replace=False))]
    g2p, inv = G2P(), load_inventory()
    pairs = build_pairs(clips, g2p, inv, seed, vocabulary)
    det = make_detector(system, **options.get(system, {}))
    vocab = sorted({p.text for p in pairs})
    scores = np.zeros(len(pairs), np.float64)
    by_clip: dict[int, list[int]] = defaultdict(list)
    for k, p in enumerate(pairs):
        by_clip[p.clip].append(k)
    info: dict[str, Any] = {}
    if system == "pocketsphinx":
        for ci, ks in by_clip.items():
            audio = pad_eval(load_eval_audio(clips[ci]))
            for k in ks:
                scores[k] = det.score_clip(audio, pairs[k].text)
    else:
        templates = None
        if det.needs_templates:
            t0 = time.perf_counter()
            templates = make_templates(vocab, template_voices)
            info["template_voices"] = template_voices
            info["template_synthesis_s"] = round(time.perf_counter() - t0, 1)
        det.enroll(vocab, templates)
        for ci, ks in by_clip.items():
            out = det.process(pad_eval(load_eval_audio(clips[ci])))
            for k in ks:
                s = out.scores[pairs[k].text]
                scores[k] = float(s.max()) if s.size else -1.0
    det.close()
    return {
        "system": system,
        "version": det.version,
        "manifest": str(manifest),
        "split": split,
        "clips": len(clips),
        "texts": len(vocab),
        "pairs": {k: sum(p.kind == k for p in pairs) for k in ("positive", "easy", "hard")},
        "metrics": pair_metrics(scores, pairs),
        "scores": scores.round(6).tolist(),
        "pair_list": [[p.clip, p.text, p.label, p.kind] for p in pairs],
        "wall_s": round(time.perf_counter() - t_start, 1),
        **info,
    }


def plot_pairs(results: dict[str, dict[str, Any]], path: Path, title: str) -> Path | None:
    curves = {}
    for system, r in results.items():
        if "scores" not in r:
            continue
        pairs = [Pair(int(c), str(t), int(lab), str(kind)) for c, t, lab, kind in r["pair_list"]]
        curves[system] = (np.asarray(r["scores"]), pairs)
    if not curves:
        return None
    return plot_curves(curves, path, title=title)

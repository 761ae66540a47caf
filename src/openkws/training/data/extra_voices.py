"""More voices for an existing corpus: render train texts with another engine's voice and splice
the clips into a training manifest (issue 11, voice diversity).

The corpus plan keeps Piper's neural voice for dev/test clips only, so the model never trains on
neural speech; every training voice is formant (espeak-ng) or concatenative (flite, festival).
This renders ``clips`` more training clips of the corpus's *train* texts in one voice (Piper
perturbs ``length_scale``, ``noise_scale`` and ``noise_w`` per clip from its seed, so each
rendition is a slightly different speaker and tempo) and writes a manifest that holds the corpus
rows with the new rows inserted after row ``at`` (default: appended). The feature cache's shards
are prefixes of the train clip list, so inserting after the rows already cached keeps those shards.

Layout under ``out``: ``clips/NNNN/NNNNNNN.wav`` and ``manifest.csv`` (the new rows only);
rendering resumes (existing WAVs are kept).

Usage: ``openkws data voices --voice piper:joe --clips 12000 --out data/synth_piper
--splice-into data/synth/manifest_voices.csv [--at ROW]``
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from openkws.text.tts import stable_hash
from openkws.training.data.audio import wav_duration
from openkws.training.data.manifest import ManifestRow, read_manifest, write_manifest
from openkws.training.data.plan import ClipSpec
from openkws.training.data.synth import manifest_row, render_clip
from openkws.training.data.tts import get_voice


@dataclass(frozen=True)
class ExtraPlan:
    voice: str
    clips: int
    seed: int = 0


def plan_extra(base: list[ManifestRow], plan: ExtraPlan) -> list[ClipSpec]:
    """``plan.clips`` specs: train texts of ``base`` (uniformly, distinct texts first) in ``plan.voice``."""
    voice = get_voice(plan.voice)
    texts: dict[str, str] = {}
    for r in base:
        if r.split == "train":
            texts.setdefault(r.text, r.phonemes)
    if not texts:
        raise ValueError("the base manifest has no split=train rows to take texts from")
    if plan.clips < 1:
        raise ValueError(f"clips must be at least 1, got {plan.clips}")
    rng = np.random.default_rng([plan.seed, stable_hash(voice.id)])
    order = list(texts)
    picks: list[str] = []
    while len(picks) < plan.clips:  # each text once before any twice
        picks += [order[i] for i in rng.permutation(len(order))]
    specs = []
    for i, text in enumerate(picks[: plan.clips]):
        specs.append(
            ClipSpec(
                index=i,
                text=text,
                phonemes=tuple(texts[text].split()),
                voice=voice.id,
                engine=voice.engine,
                split="train",
                seed=stable_hash(voice.id, text, i, plan.seed),
                lead_ms=float(rng.uniform(50, 150)),
                tail_ms=float(rng.uniform(50, 150)),
            )
        )
    return specs


def _render(job: tuple[ClipSpec, str]) -> ManifestRow | None:
    spec, out = job
    path = Path(out) / spec.path
    if path.exists():  # resumed: keep the clip, rebuild its row
        return manifest_row(spec, wav_duration(path))
    try:
        return render_clip(spec, Path(out))
    except Exception:  # noqa: BLE001 - one text an engine cannot say must not stop the corpus
        return None


def render_extra(
    specs: list[ClipSpec], out: Path, workers: int = 2, progress: bool = True
) -> list[ManifestRow]:
    """Render the specs into ``out`` (resumable); writes ``out/manifest.csv`` in plan order."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, str(out)) for s in specs]
    with mp.get_context("spawn").Pool(workers) as pool:
        rows = list(
            tqdm(
                pool.imap(_render, jobs, chunksize=16),
                total=len(jobs),
                disable=not progress,
                desc=f"render {specs[0].voice if specs else ''}",
            )
        )
    done = [r for r in rows if r is not None]
    write_manifest(out / "manifest.csv", done)
    return done


def splice(base_path: Path, extra_path: Path, dest: Path, at: int | None = None) -> int:
    """Write ``dest``: ``base`` rows with ``extra`` rows inserted after row ``at`` (None: appended).
    Paths are rewritten relative to ``dest``'s folder, so a ``dest`` beside ``base`` keeps base
    rows byte-identical (the feature cache names shards by their clips' paths). Returns the rows."""

    def moved(src: Path) -> list[ManifestRow]:
        rows = read_manifest(src)
        rel = [os.path.relpath(src.parent / r.path, dest.parent) for r in rows]
        return [replace(r, path=p) for r, p in zip(rows, rel, strict=True)]

    base, extra = moved(base_path), moved(extra_path)
    if at is not None and not 0 <= at <= len(base):
        raise ValueError(f"--at must be between 0 and {len(base)} (rows of {base_path}), got {at}")
    cut = len(base) if at is None else at
    rows = base[:cut] + extra + base[cut:]
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(dest, rows)
    return len(rows)

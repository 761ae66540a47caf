"""Render a clip plan to WAV files in parallel, resumably, with an incrementally flushed manifest.

Layout under ``out`` (default ``data/synth``)::

    clips/NNNN/NNNNNNN.wav   16 kHz mono PCM16, file name = plan index
    manifest.csv             one row per finished clip (see openkws.training.data.manifest)
    failures.csv             clips an engine could not render (index, voice, text, error)
    plan.json                recipe, seed, voice-registry digest and plan size: resuming with
                             any of them changed is refused

While running, rows are appended in completion order, so ``manifest.csv`` is usable at any time;
when the plan is finished it is rewritten in plan order, which makes it byte-identical across
runs with the same (recipe, seed), whatever the worker count. Resuming skips every clip whose WAV
already exists (its row is rebuilt from the plan and the WAV header).
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from openkws.constants import SAMPLE_RATE
from openkws.text.tts import stable_hash
from openkws.training.data.audio import trim_silence, wav_duration, write_wav
from openkws.training.data.manifest import ManifestRow, ManifestWriter, read_manifest, write_manifest
from openkws.training.data.plan import ClipSpec, Recipe, build_plan
from openkws.training.data.splits import check_disjoint
from openkws.training.data.tts import list_voices, synthesize

CHUNK = 16  # clips per worker task: amortises IPC without hurting progress granularity


@dataclass(frozen=True)
class SynthResult:
    total: int
    rendered: int
    skipped: int
    failed: int
    wall_s: float


def manifest_row(spec: ClipSpec, duration: float) -> ManifestRow:
    return ManifestRow(
        spec.path, spec.text, " ".join(spec.phonemes), spec.voice, spec.engine, duration, spec.split
    )


def render_clip(spec: ClipSpec, out: Path) -> ManifestRow:
    """Synthesize, trim to the planned lead/tail, and write one clip."""
    wave = synthesize(spec.text, spec.voice, seed=spec.seed)
    wave = trim_silence(wave, lead_ms=spec.lead_ms, tail_ms=spec.tail_ms)
    write_wav(out / spec.path, wave)
    return manifest_row(spec, len(wave) / SAMPLE_RATE)


def _work(args: tuple[list[ClipSpec], str]) -> list[tuple[ClipSpec, ManifestRow | None, str]]:
    specs, out = args
    results: list[tuple[ClipSpec, ManifestRow | None, str]] = []
    for spec in specs:
        try:
            results.append((spec, render_clip(spec, Path(out)), ""))
        except Exception as exc:  # an engine failing on one text must not stop the corpus
            results.append((spec, None, f"{type(exc).__name__}: {exc}"))
    return results


def _chunks(specs: list[ClipSpec], n: int) -> Iterator[list[ClipSpec]]:
    for i in range(0, len(specs), n):
        yield specs[i : i + n]


def _init_worker() -> None:

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # Piper's onnxruntime: one thread per worker process


def run_synthesis(
    recipe: Recipe,
    out: Path,
    seed: int = 0,
    workers: int = 2,
    num_clips: int | None = None,
    progress: bool = True,
) -> SynthResult:
    """Render ``recipe`` (optionally only its first ``num_clips`` plan entries) into ``out``."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    # The plan depends on the recipe, the seed and the voice registry: resuming with any of them
    # changed would mix two plans under the same file names.
    voices = f"{stable_hash(*(v.id for v in list_voices())):08x}"
    meta = {"recipe": asdict(recipe), "seed": seed, "voices": voices}
    meta_path = out / "plan.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        old.setdefault("voices", voices)  # written before the registry digest existed
        if {k: old.get(k) for k in meta} != meta:
            raise SystemExit(
                f"{out} holds a corpus from another recipe/seed/voice registry ({meta_path}); use another --out"
            )
    plan = build_plan(recipe, seed)
    if num_clips is not None:
        plan = plan[:num_clips]  # plan order makes any prefix a usable corpus
    meta_path.write_text(json.dumps({**meta, "planned": len(plan)}, indent=1))

    manifest_path = out / "manifest.csv"
    done = {r.path for r in read_manifest(manifest_path)} if manifest_path.exists() else set()
    todo: list[ClipSpec] = []
    recovered: list[ManifestRow] = []
    for spec in plan:
        wav = out / spec.path
        if wav.exists():
            if spec.path not in done:  # written but not recorded (killed between the two)
                recovered.append(manifest_row(spec, wav_duration(wav)))
        else:
            todo.append(spec)
    skipped = len(plan) - len(todo)
    rendered = failed = 0
    with ManifestWriter(manifest_path) as writer, (out / "failures.csv").open("a", newline="") as ff:
        fail_w = csv.writer(ff)
        for r in recovered:
            writer.write(r)
        bar = tqdm(total=len(plan), initial=skipped, unit="clip", disable=not progress, smoothing=0.05)
        tasks = [(c, str(out)) for c in _chunks(todo, CHUNK)]
        if workers <= 1:
            results_iter: Iterator[list[tuple[ClipSpec, ManifestRow | None, str]]] = map(_work, tasks)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
            results_iter = pool.imap(_work, tasks)  # ordered: the manifest grows in plan order
        try:
            for results in results_iter:
                for spec, row, err in results:
                    if row is None:
                        failed += 1
                        fail_w.writerow([spec.index, spec.voice, spec.text, err])
                        ff.flush()
                    else:
                        rendered += 1
                        writer.write(row)
                bar.update(len(results))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
    finalize_manifest(out, plan)
    return SynthResult(len(plan), rendered, skipped, failed, time.monotonic() - t0)


def finalize_manifest(out: Path, plan: list[ClipSpec]) -> list[ManifestRow]:
    """Rewrite ``manifest.csv`` in plan order from the clips on disk, then check split disjointness.

    Also usable on a partial corpus: only clips whose WAV exists are listed.
    """
    manifest_path = out / "manifest.csv"
    known = {r.path: r for r in read_manifest(manifest_path)} if manifest_path.exists() else {}
    rows: list[ManifestRow] = []
    for spec in plan:
        row = known.get(spec.path)
        if row is None:
            wav = out / spec.path
            if not wav.exists():
                continue
            row = manifest_row(spec, wav_duration(wav))
        rows.append(row)
    check_disjoint(r.as_dict() for r in rows)
    write_manifest(manifest_path, rows)
    return rows

"""`openkws data ...` commands: synthesize the training corpus and build the evaluation sets.

Heavy imports happen inside the commands: every `openkws` invocation imports this module.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)

DATA_DIR = Path("data")


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so worker pools are shut down and output stays consistent
    (a background job's SIGINT is ignored by the shell, so `kill PID` is how one stops it)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@app.command()
def synth(
    out: Path = typer.Option(DATA_DIR / "synth", help="Output directory (clips/, manifest.csv)."),
    recipe: str = typer.Option("default", help="Recipe: default (125k clips), small (2k), tiny (24)."),
    num_clips: int | None = typer.Option(
        None, help="Render only the first N clips of the plan (any prefix is usable)."
    ),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    seed: int = typer.Option(0, help="Plan and synthesis seed."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Render isolated words and 2-4 word phrases with every offline TTS voice (resumable)."""
    from openkws.training.data.plan import get_recipe
    from openkws.training.data.synth import run_synthesis

    _exit_on_sigterm()
    res = run_synthesis(
        get_recipe(recipe), out, seed=seed, workers=workers, num_clips=num_clips, progress=progress
    )
    typer.echo(
        f"{res.total} clips planned: {res.rendered} rendered, {res.skipped} already present, "
        f"{res.failed} failed; {res.wall_s:.0f} s wall; manifest {out / 'manifest.csv'}"
    )


@app.command()
def voices(
    voice: str = typer.Option("piper:joe", help="Voice id (engine:name), e.g. piper:joe."),
    clips: int = typer.Option(12000, min=1, help="Clips to render (train texts, each once before twice)."),
    base: Path = typer.Option(DATA_DIR / "synth" / "manifest.csv", help="Corpus whose train texts are used."),
    out: Path = typer.Option(DATA_DIR / "synth_piper", help="Output directory (clips/, manifest.csv)."),
    splice_into: Path | None = typer.Option(None, help="Also write base + new rows as this manifest."),
    at: int | None = typer.Option(None, help="Insert the new rows after this base row (default: append)."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    seed: int = typer.Option(0),
) -> None:
    """Render more training clips of the corpus's texts in one more voice (resumable), optionally spliced."""
    from openkws.training.data.extra_voices import ExtraPlan, plan_extra, render_extra, splice
    from openkws.training.data.manifest import read_manifest

    _exit_on_sigterm()
    if not base.is_file():
        raise typer.BadParameter(f"{base} not found; build the corpus with `openkws data synth`")
    try:
        specs = plan_extra(read_manifest(base), ExtraPlan(voice, clips, seed))
    except (KeyError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e
    rows = render_extra(specs, out, workers)
    typer.echo(f"{len(rows)} of {len(specs)} clips in {out / 'manifest.csv'}")
    if splice_into is not None:
        try:
            n = splice(base, out / "manifest.csv", splice_into, at)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        typer.echo(f"{n} rows in {splice_into}")


@app.command()
def manifest(
    out: Path = typer.Option(DATA_DIR / "synth", help="Synthesis directory."),
    recipe: str = typer.Option("default"),
    seed: int = typer.Option(0),
) -> None:
    """Rebuild manifest.csv (plan order) from the clips present, e.g. while synth is still running."""
    from openkws.training.data.plan import build_plan, get_recipe
    from openkws.training.data.synth import finalize_manifest

    rows = finalize_manifest(out, build_plan(get_recipe(recipe), seed))
    typer.echo(f"{len(rows)} clips in {out / 'manifest.csv'}")


@app.command()
def stats(manifest_path: Path = typer.Argument(DATA_DIR / "synth" / "manifest.csv")) -> None:
    """Print the figures of a synthesis manifest: clips, voices, distinct texts, hours, per split."""
    from openkws.training.data.manifest import read_manifest

    rows = read_manifest(manifest_path)
    for split in ("train", "dev", "test", None):
        sel = [r for r in rows if split is None or r.split == split]
        typer.echo(
            f"{split or 'all':5s}: {len(sel):7d} clips, {len({r.voice for r in sel}):3d} voices, "
            f"{len({r.engine for r in sel})} engines, {len({r.text for r in sel}):6d} texts, "
            f"{sum(r.duration for r in sel) / 3600:.2f} h"
        )


@app.command()
def asterisk(
    out: Path = typer.Option(DATA_DIR / "eval" / "asterisk", help="Output directory."),
    limit: int | None = typer.Option(None, help="Only the first N prompts (quick check)."),
) -> None:
    """Real-speech dev set from the Asterisk prompts (EVALUATION ONLY, never training)."""
    from openkws.training.data.asterisk import build_asterisk

    rows = build_asterisk(out, limit)
    typer.echo(
        f"asterisk: {len(rows)} clips, {len({r['text'] for r in rows})} distinct texts -> {out / 'manifest.csv'}"
    )


@app.command()
def streams(
    out: Path = typer.Option(DATA_DIR / "eval", help="Writes <out>/negatives and <out>/streams."),
    hours: float = typer.Option(
        1.05, help="Hours of keyword-free negative speech (written clean and noisy)."
    ),
    stream_minutes: float = typer.Option(5.0, help="Length of each keyword test stream."),
    streams_per_condition: int = typer.Option(2, help="Streams per (background, SNR) condition."),
    workers: int = typer.Option(2, min=1),
    seed: int = typer.Option(0),
    negatives: bool = typer.Option(True, help="Build the long negative audio."),
    keyword_streams: bool = typer.Option(True, help="Build the keyword test streams."),
) -> None:
    """Long negative audio (false alarms/hour) and keyword streams with ground-truth times."""
    from openkws.training.data.streams import build_keyword_streams, build_negatives

    _exit_on_sigterm()
    if negatives:
        rows = build_negatives(out / "negatives", hours=hours, seed=seed, workers=workers)
        clean_h = sum(float(r["duration"]) for r in rows if r["condition"] == "clean") / 3600
        typer.echo(
            f"negatives: {clean_h:.2f} h of speech, clean and noisy -> {out / 'negatives' / 'manifest.csv'}"
        )
    if keyword_streams:
        truth = build_keyword_streams(
            out / "streams",
            minutes=stream_minutes,
            streams_per_condition=streams_per_condition,
            seed=seed,
            workers=workers,
        )
        typer.echo(f"streams: {len(truth)} keyword occurrences -> {out / 'streams' / 'ground_truth.csv'}")


@app.command()
def evalsets(
    out: Path = typer.Option(
        DATA_DIR / "eval", help="Writes <out>/asterisk, <out>/negatives, <out>/streams."
    ),
    with_asterisk: bool = typer.Option(True, "--asterisk/--no-asterisk"),
    with_streams: bool = typer.Option(
        True, "--streams/--no-streams", help="Long negatives + keyword streams."
    ),
    workers: int = typer.Option(2, min=1),
    seed: int = typer.Option(0),
) -> None:
    """All evaluation sets: `asterisk` then `streams` with their defaults."""
    if with_asterisk:
        asterisk(out / "asterisk", None)
    if with_streams:
        streams(out, 1.05, 5.0, 2, workers, seed, True, True)

"""`openkws data ...` commands: synthesize the training corpus and build the evaluation sets.

Heavy imports happen inside the commands: every `openkws` invocation imports this module.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)

DATA_DIR = Path("data")


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
    from training.data.plan import get_recipe
    from training.data.synth import run_synthesis

    res = run_synthesis(
        get_recipe(recipe), out, seed=seed, workers=workers, num_clips=num_clips, progress=progress
    )
    typer.echo(
        f"{res.total} clips planned: {res.rendered} rendered, {res.skipped} already present, "
        f"{res.failed} failed; {res.wall_s:.0f} s wall; manifest {out / 'manifest.csv'}"
    )


@app.command()
def manifest(
    out: Path = typer.Option(DATA_DIR / "synth", help="Synthesis directory."),
    recipe: str = typer.Option("default"),
    seed: int = typer.Option(0),
) -> None:
    """Rebuild manifest.csv (plan order) from the clips present, e.g. while synth is still running."""
    from training.data.plan import build_plan, get_recipe
    from training.data.synth import finalize_manifest

    rows = finalize_manifest(out, build_plan(get_recipe(recipe), seed))
    typer.echo(f"{len(rows)} clips in {out / 'manifest.csv'}")


@app.command()
def stats(manifest_path: Path = typer.Argument(DATA_DIR / "synth" / "manifest.csv")) -> None:
    """Print the figures of a synthesis manifest: clips, voices, distinct texts, hours, per split."""
    from training.data.manifest import read_manifest

    rows = read_manifest(manifest_path)
    for split in ("train", "dev", "test", None):
        sel = [r for r in rows if split is None or r.split == split]
        typer.echo(
            f"{split or 'all':5s}: {len(sel):7d} clips, {len({r.voice for r in sel}):3d} voices, "
            f"{len({r.engine for r in sel})} engines, {len({r.text for r in sel}):6d} texts, "
            f"{sum(r.duration for r in sel) / 3600:.2f} h"
        )

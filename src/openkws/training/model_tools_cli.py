"""`openkws eval results-table`, `openkws eval length-frr`, `openkws eval background-probe` and
`openkws export quantize`: the reports and the int8 variant that were ``python -m`` scripts.

Imported by every `openkws` invocation (through :mod:`openkws.training.cli`), so each command imports
its module inside: background-probe and quantize load torch or onnxruntime's quantiser.

Examples::

    openkws eval results-table runs/eval
    openkws eval length-frr runs/eval/default-asterisk/scores.csv --manifest data/eval/asterisk/manifest.csv
    openkws eval background-probe --model models/default --manifest data/robust/probe_manifest.csv
    openkws export quantize --model models/default --out runs/quant/default-int8 --manifest data/synth/manifest.csv
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(eval_app: typer.Typer, export_app: typer.Typer) -> None:
    eval_app.command("results-table")(results_table)
    eval_app.command("length-frr")(length_frr)
    eval_app.command("background-probe")(background_probe)
    export_app.command("quantize")(quantize)


def results_table(
    runs: Path = typer.Argument(
        Path("runs/eval"), help="folder of `openkws eval pairs --out` reports, one sub-folder per row"
    ),
) -> None:
    """Print the docs/RESULTS.md ablation rows (markdown) from pairs.json reports; missing ones say "not run"."""
    from openkws.training.results_table import HEADER, render

    if not runs.is_dir():
        raise typer.BadParameter(f"{runs} is not a folder; give the folder that holds the eval reports")
    typer.echo(HEADER)
    typer.echo(render(runs))


def length_frr(
    scores: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="scores.csv written by `openkws eval pairs --out DIR`"
    ),
    manifest: Path = typer.Option(..., exists=True, dir_okay=False, help="the evaluation manifest (CSV)"),
    far: float = typer.Option(0.01, help="false-accept rate on easy pairs that sets each threshold (0-1)"),
) -> None:
    """False rejects by keyword length in phones, at the threshold of a given easy-pair false-accept rate."""
    from openkws.training.length_frr import length_table

    if not 0.0 < far < 1.0:
        raise typer.BadParameter(f"--far must be between 0 and 1 (exclusive), got {far}")
    try:
        tables = length_table(scores, manifest, far)
    except (KeyError, ValueError) as e:
        raise typer.BadParameter(
            f"{scores}: {e} (expected the scores.csv of `openkws eval pairs --out`)"
        ) from None
    for system, table in tables.items():
        cells = ", ".join(
            f"{b} phones: FRR {frr:.1%} (n={n}, median {med:.2f})" for b, (n, frr, med) in table.items()
        )
        typer.echo(f"{system} @ {far:.0%} easy FAR: {cells}")


def background_probe(
    model: Path = typer.Option(..., exists=True, file_okay=False, help="exported model directory"),
    manifest: Path = typer.Option(
        ..., exists=True, dir_okay=False, help="synthetic manifest; its `test` split is probed"
    ),
    threshold: float = typer.Option(0.65, min=0.0, max=1.0, help="detector threshold (cosine)"),
    sequences: int = typer.Option(200, min=1, help="running-speech sequences of 4 test clips"),
    out: Path | None = typer.Option(None, help="also write the JSON result here"),
) -> None:
    """Background false-alarm probe on held-out synthetic speech: running speech, cut phrases, keywords."""
    import torch  # heavy: only this command needs it

    from openkws.training.background_probe import probe

    torch.set_num_threads(1)
    text = json.dumps(probe(model, manifest, threshold, sequences), indent=1)
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def quantize(
    model: Path = typer.Option(..., exists=True, file_okay=False, help="exported (float) model directory"),
    out: Path = typer.Option(..., help="model directory to write the int8 variant to"),
    roles: str = typer.Option(
        "speech_embedding,acoustic_frames,acoustic_pool", help="comma-separated graphs to quantise"
    ),
    method: str = typer.Option("static", help="static (QDQ, calibrated) or dynamic"),
    manifest: Path | None = typer.Option(
        None, help="synthetic manifest: its training split calibrates static quantisation"
    ),
    clips: int = typer.Option(200, min=1, help="calibration clips"),
) -> None:
    """Write an int8 variant of a model directory (onnxruntime quantisation); keep it only if
    `openkws eval pairs` on it is within 0.5 EER points of the float model."""
    from openkws.training.quantize import quantize_model

    try:
        res = quantize_model(model, out, tuple(r for r in roles.split(",") if r), method, manifest, clips)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(json.dumps(res, indent=2))

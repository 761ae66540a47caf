"""`openkws train ...` and `openkws export ...` (`openkws eval ...`: :mod:`openkws.training.eval_cli`).

Imported by every `openkws` invocation, so nothing heavy (torch, onnx) is imported at module level:
each command imports its module inside (measured reason: on the 2-core dev machine at load 15,
importing this module took 0.6 s, the trainer 13.7 s, export 10.1 s and evaluation 5.2 s).

Examples::

    openkws train run --config default
    openkws train run --config default --resume
    openkws train run --config smoke --set train.epochs=2 --set data.manifest=/tmp/m.csv
    openkws train estimate --config default --steps 30
    openkws train cache --config default --workers 2
    openkws export --checkpoint runs/default/checkpoints/best.pt --out models/default \
        --metrics synthetic_test=runs/eval/default-synth/pairs.json --metrics asterisk=runs/eval/default-asterisk/pairs.json
    openkws export --untrained speech_embedding --out /tmp/untrained
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import typer

train_app = typer.Typer(no_args_is_help=True, add_completion=False)
export_app = typer.Typer(add_completion=False, invoke_without_command=True)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=5", "loss.mal.utterance=false"]`` -> nested dict (values parsed as YAML).

    >>> parse_overrides(["train.epochs=5", "loss.mal.utterance=false"])
    {'train': {'epochs': 5}, 'loss': {'mal': {'utterance': False}}}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects key.path=value, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _load(config: str, overrides: list[str] | None):  # noqa: ANN202
    from openkws.training.config import load_config

    return load_config(config, parse_overrides(overrides))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )


@train_app.command("run")
def train_run(
    config: str = typer.Option(
        ..., "--config", "-c", help="a shipped config name (smoke, default, robust_full, ...) or a YAML path"
    ),
    out: Path | None = typer.Option(None, help="run directory (default runs/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from <out>/checkpoints/last.pt"),
    resume_from: Path | None = typer.Option(None, help="continue from this checkpoint"),
    overrides: list[str] | None = typer.Option(None, "--set", help="override a config field: key.path=value"),
    cache_workers: int = typer.Option(2, help="processes for the feature cache"),
    max_steps: int | None = typer.Option(None, help="stop after this many optimizer steps"),
    export_to: Path | None = typer.Option(None, "--export", help="export the best checkpoint here when done"),
    verbose: bool = typer.Option(True, help="log epoch summaries"),
) -> None:
    """Train encoders with a config; writes checkpoints, steps.csv and epochs.csv."""
    setup_logging(verbose)
    from openkws.training.trainer import train

    cfg = _load(config, overrides)
    run_dir = out or Path("runs") / cfg.name
    res = train(cfg, run_dir, resume=resume_from or resume, cache_workers=cache_workers, max_steps=max_steps)
    typer.echo(f"trained {res.epochs} epochs / {res.steps} steps; best {json.dumps(res.best)}")
    typer.echo(f"checkpoints in {run_dir / 'checkpoints'}")
    if export_to is not None:
        from openkws.training.export import export_checkpoint

        best = run_dir / "checkpoints" / "best.pt"
        export_checkpoint(best if best.is_file() else res.checkpoint, export_to)
        typer.echo(f"exported to {export_to}")


@train_app.command("cache")
def train_cache(
    config: str = typer.Option(..., "--config", "-c"),
    overrides: list[str] | None = typer.Option(None, "--set"),
    workers: int = typer.Option(2, help="processes"),
) -> None:
    """Precompute the front-end feature cache (train + dev) for a config (resumable: rerun it)."""
    from openkws.training.train_data import build_stores

    cfg = _load(config, overrides)
    train_clips, _, dev_store = build_stores(cfg, workers, progress=True, build_all=True)
    typer.echo(
        f"cache ready under {cfg.data.cache_dir} ({len(train_clips)} train, {len(dev_store.clips)} dev clips)"
    )


@train_app.command("estimate")
def train_estimate(
    config: str = typer.Option(..., "--config", "-c"),
    overrides: list[str] | None = typer.Option(None, "--set"),
    steps: int = typer.Option(30, help="optimizer steps to time"),
    cache_workers: int = typer.Option(2),
) -> None:
    """Time a few steps of a config and extrapolate the full run (feature cache excluded)."""

    from openkws.training.trainer import train

    cfg = _load(config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        quick = cfg.model_copy(
            update={
                "train": cfg.train.model_copy(update={"epochs": steps, "log_every": 1, "val_every": 10**6})
            }
        )
        res = train(quick, Path(tmp), cache_workers=cache_workers, max_steps=steps, progress=False)
        with open(Path(tmp) / "steps.csv") as f:
            rows = list(csv.DictReader(f))
        with open(Path(tmp) / "epochs.csv") as f:
            epoch_rows = list(csv.DictReader(f))
        val_sec = float(epoch_rows[-1]["val_sec"] or 0.0)
    timed_rows = rows[2:] or rows  # the first steps warm up allocators and caches
    median = float(np.median([float(r["sec_per_step"]) for r in timed_rows]))
    cpu = float(np.median([float(r["cpu_sec_per_step"]) for r in timed_rows]))
    from openkws.training.loader.clips import config_clips
    from openkws.training.loader.sampler import KeywordBatches

    clips, _ = config_clips(cfg)
    sampler = KeywordBatches(
        clips,
        cfg.data.keywords_per_batch,
        cfg.data.utterances_per_keyword,
        batches_per_epoch=cfg.train.batches_per_epoch,
        hard_fraction=cfg.data.hard_fraction,
    )
    total_steps = len(sampler) * cfg.train.epochs
    est = total_steps * median
    n_val = math.ceil(cfg.train.epochs / cfg.train.val_every)
    # On an idle machine a step takes about its CPU time spread over the threads (80% parallel efficiency).
    idle = cpu / (cfg.train.threads * 0.8) if cfg.train.threads > 1 else cpu
    typer.echo(
        f"CPU time {cpu:.3f} s/step -> ~{idle:.3f} s/step on an idle machine with {cfg.train.threads} threads: "
        f"~{total_steps * idle / 60:.1f} min of steps"
    )
    typer.echo(
        f"{res.steps} steps timed: median {median:.3f} s/step (wall, current load); {len(sampler)} steps/epoch x {cfg.train.epochs} "
        f"epochs = {total_steps} steps -> ~{est / 60:.1f} min of steps + {n_val} validations x {val_sec:.0f} s "
        f"= ~{(est + n_val * val_sec) / 60:.1f} min (feature cache not included)"
    )


def eval_metrics(items: list[str]) -> dict[str, float]:
    """``["synth_test=runs/x/pairs.json"]`` -> ``{"synth_test.easy.eer": ..., ...}`` (openkws system only).

    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "pairs.json"
    >>> _ = p.write_text(json.dumps({"systems": {"openkws:v1": {"easy": {"eer": 0.01, "auc": 0.99, "ap": 0.98}}}}))
    >>> eval_metrics([f"synth={p}"])
    {'synth.easy.eer': 0.01, 'synth.easy.auc': 0.99, 'synth.easy.ap': 0.98}
    """
    out: dict[str, float] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"--metrics expects NAME=pairs.json, got {item!r}")
        name, path = item.split("=", 1)
        report = json.loads(Path(path).read_text())
        systems = {k: v for k, v in report.get("systems", {}).items() if k.startswith("openkws")}
        if not systems:
            raise typer.BadParameter(f"{path} has no openkws system; run `openkws eval pairs --model ...`")
        for neg, m in next(iter(systems.values())).items():
            out.update({f"{name}.{neg}.{k}": round(float(m[k]), 5) for k in ("eer", "auc", "ap")})
    return out


@export_app.callback()
def export(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Option(None, help="trainer checkpoint (.pt)"),
    out: Path | None = typer.Option(None, help="model directory to write, e.g. models/default"),
    untrained: str | None = typer.Option(None, help="export a random model for this front-end instead"),
    model_version: str | None = typer.Option(None, help="model_version in model.json"),
    metrics: list[str] | None = typer.Option(
        None,
        help="NAME=pairs.json from `openkws eval pairs` (repeatable): recorded in model.json and the card",
    ),
    threshold: float | None = typer.Option(
        None, min=0.0, max=1.0, help="default_threshold in model.json (default: the checkpoint config's)"
    ),
    bank_minutes: float = typer.Option(
        20.0,
        min=0.0,
        help="minutes of background audio in the calibration bank (0: none; `openkws eval bank`)",
    ),
) -> None:
    """Export encoders to ONNX + model.json + MODEL_CARD.md (checker, parity and size checked)."""
    if ctx.invoked_subcommand is not None:
        return
    from openkws.training.export import export_checkpoint, export_untrained

    if out is None:
        raise typer.BadParameter("--out is required: the model directory to write")
    if checkpoint is not None and untrained is None:
        extra = eval_metrics(metrics or [])
        path = export_checkpoint(
            checkpoint, out, model_version, extra or None, threshold, bank_minutes=bank_minutes
        )
    elif untrained is not None and checkpoint is None:
        path = export_untrained(out, untrained)
    else:
        raise typer.BadParameter("give exactly one of --checkpoint or --untrained")
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 2**20
    typer.echo(f"exported {path} ({size:.1f} MiB); contract, onnx.checker and parity checks passed")


@export_app.command("whiten")
def export_whiten(
    model: Path = typer.Option(..., help="exported model directory with a calibration bank"),
    mode: list[str] | None = typer.Option(
        None, help="proxy modes to whiten: tts, both (repeatable; default both); 'none' removes the whitening"
    ),
) -> None:
    """Add (or refresh) whitened TTS proxies: whitening.npz from the model's calibration bank, in model.json."""
    from openkws.engine.whitening import WHITENING_MODES
    from openkws.training.export import write_whitening

    modes = tuple(mode or WHITENING_MODES)
    if modes == ("none",):
        modes = ()
    bad = [m for m in modes if m not in WHITENING_MODES]
    if bad:
        raise typer.BadParameter(f"mode {bad[0]!r}: choose from {', '.join(WHITENING_MODES)}, or 'none'")
    try:
        write_whitening(model, modes)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"{model}: whitened proxies for {', '.join(modes) or 'no mode (removed)'}")

"""`openkws train ...`, `openkws eval ...` and `openkws export ...`.

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
    openkws eval pairs --model models/default --manifest data/eval/asterisk/manifest.csv --out runs/eval/asterisk
    openkws eval pairs --model models/default --manifest data/synth/manifest.csv --split test --baselines
    openkws eval cost --model models/default
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

from openkws.engine.decision import DecisionMode
from openkws.settings import packaged_model_dir

train_app = typer.Typer(no_args_is_help=True, add_completion=False)
eval_app = typer.Typer(no_args_is_help=True, add_completion=False)
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


def _setup_logging(verbose: bool) -> None:
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
    _setup_logging(verbose)
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
    sampler = KeywordBatches(clips, cfg.data.keywords_per_batch, cfg.data.utterances_per_keyword,
                             batches_per_epoch=cfg.train.batches_per_epoch, hard_fraction=cfg.data.hard_fraction)  # fmt: skip
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


@eval_app.command("pairs")
def eval_pairs(
    manifest: Path = typer.Option(..., help="CSV with path,text[,start,end] (seconds)"),
    model: Path | None = typer.Option(None, help="exported model directory"),
    out: Path | None = typer.Option(None, help="write pairs.json, scores.csv and pairs.png here"),
    baselines: bool = typer.Option(False, help="also score the untrained TTS-template baselines"),
    max_clips: int | None = typer.Option(None, help="evaluate a random subset of clips"),
    split: str | None = typer.Option(None, help="keep only rows with this value in a `split` column"),
    proxy: list[str] | None = typer.Option(
        None, help="keyword proxies to score (repeatable): text (default), tts (acoustic, 8 TTS voices), both"
    ),
    no_leading_pad: bool = typer.Option(
        False,
        help="also report each openkws system with no silence ahead of the clips (audio starts at the clip)",
    ),
    seed: int = typer.Option(0),
) -> None:
    """EER / ROC-AUC / AP on match vs easy and hard mismatch pairs built from a manifest, scored through
    the serving engine (the service's Spotter, window plan and enrollment)."""
    from openkws.training.evaluate import evaluate_pairs, format_report

    if model is None and not baselines:
        raise typer.BadParameter("give --model and/or --baselines")
    report = evaluate_pairs(
        manifest,
        model,
        out,
        baselines,
        max_clips,
        seed,
        split=split,
        proxies=proxy or ("text",),
        no_leading_pad=no_leading_pad,
    )
    typer.echo(format_report(report))
    if out is not None:
        typer.echo(f"report: {out / 'pairs.json'}  plot: {out / 'pairs.png'}")


@eval_app.command("cost")
def eval_cost(
    model: Path = typer.Option(..., help="exported model directory"),
    frames: int = typer.Option(256, help="feature frames per timed call"),
    repeats: int = typer.Option(20),
) -> None:
    """Per-frame cost of acoustic_frames and per-window cost of acoustic_pool (the engine's encoders, 1 thread)."""
    from openkws.training.evaluate import measure_cost

    typer.echo(json.dumps(measure_cost(model, frames, repeats), indent=2))


@eval_app.command("streams")
def eval_streams(
    manifest: Path = typer.Option(
        Path("data/eval/asterisk/manifest.csv"), help="CSV with path,text (keyword clips)"
    ),
    model: Path = typer.Option(
        packaged_model_dir(), help="exported model directory (default: the packaged model)"
    ),
    out: Path = typer.Option(
        Path("runs/eval/streams"), help="streams.json, streams.md, det.png, score_hist.png"
    ),
    cache: Path = typer.Option(
        Path("data/cache/eval_streams"), help="built audio and per-stream events (reruns reuse them)"
    ),
    condition: list[str] | None = typer.Option(
        None, help="quiet, noise, music, babble, reverb (repeatable; default all)"
    ),
    negatives: list[str] | None = typer.Option(
        None,
        help="recorded, tts, music, or a folder of audio (<name>.txt beside a file = its transcript); repeatable",
    ),
    proxy: list[str] | None = typer.Option(
        None,
        help="openkws proxies: text, tts, both, tts-white, both-white, both-joint (repeatable; default text "
        "and tts; the -white/-joint kinds are issue 26's whitened forms)",
    ),
    bank_sweep: bool = typer.Option(
        False,
        help="also sweep each proxy kind in bank-predicted FA/h (the service's sensitivity): <name>@bank",
    ),
    tts_minutes: float = typer.Option(30.0, help="minutes of TTS running text among the negatives"),
    floor: float = typer.Option(0.4, help="enrollment threshold of the sweep (lowest threshold reported)"),
    doc: Path | None = typer.Option(
        None, help="write the tables into this markdown file (e.g. docs/BENCHMARKS.md)"
    ),
    cached_only: bool = typer.Option(
        False, help="report from the per-stream events computed so far (no decoding)"
    ),
    no_leading_pad: bool = typer.Option(
        False,
        help="also report openkws with each keyword clip decoded as its own stream from its speech onset "
        "(no audio ahead of the keyword)",
    ),
    seed: int = typer.Option(0),
    cohort: bool = typer.Option(False, help="engine with cohort-normalised scores (OPENKWS_COHORT=on)"),
    decision: str = typer.Option("hold", help="engine decision rule: hold or peak (OPENKWS_DECISION)"),
    vad: bool = typer.Option(
        False,
        "--vad/--no-vad",
        help="decode every stream through the service's voice-activity gate (OPENKWS_VAD=on: webrtcvad "
        "mode 3, 1.2 s pre-roll, 0.8 s hangover); its events are cached apart",
    ),
) -> None:
    """FRR at 0.1/0.5/1 false alarms per hour per keyword on clips in background, through the engine.

    Peer detectors (pocketsphinx, EfficientWord-Net) run from a checkout: ``python -m bench.streams_peers``."""
    from openkws.training.eval_streams.conditions import CONDITIONS
    from openkws.training.eval_streams.engine_adapter import KINDS
    from openkws.training.eval_streams.report import markdown, write_doc
    from openkws.training.eval_streams.run import PROXY_KINDS, StreamsConfig, run_streams

    for p in proxy or ():
        if p not in KINDS:
            raise typer.BadParameter(f"proxy {p!r}: choose from {', '.join(KINDS)}")
    for c in condition or ():
        if c not in CONDITIONS:
            raise typer.BadParameter(f"condition {c!r}: choose from {', '.join(CONDITIONS)}")
    if not 0.0 <= floor < 1.0:
        raise typer.BadParameter("floor must be in [0, 1)")
    if decision not in ("hold", "peak"):
        raise typer.BadParameter(f"decision {decision!r}: choose hold or peak")
    mode: DecisionMode = "peak" if decision == "peak" else "hold"
    _setup_logging(False)
    cfg = StreamsConfig(
        manifest=manifest,
        model=model,
        out=out,
        cache=cache,
        conditions=tuple(condition or CONDITIONS),
        negatives=tuple(negatives or ("recorded", "tts", "music")),
        proxies=tuple(proxy or PROXY_KINDS),
        tts_minutes=tts_minutes,
        floor=floor,
        seed=seed,
        cached_only=cached_only,
        no_leading_pad=no_leading_pad,
        cohort=cohort,
        decision=mode,
        bank_sweep=bank_sweep,
        vad=vad,
    )
    report = run_streams(cfg)
    table = markdown(report)
    typer.echo(table)
    if doc is not None:
        write_doc(report, table, out, doc, "openkws eval streams", cached_only)
    typer.echo(f"report: {out / 'streams.json'}  plots: {out / 'det.png'}, {out / 'score_hist.png'}")


@eval_app.command("bank")
def eval_bank(
    model: Path = typer.Option(
        packaged_model_dir(), help="exported model directory to (re)build the bank in"
    ),
    tts_minutes: float = typer.Option(14.0, help="minutes of TTS running speech"),
    noise_minutes: float = typer.Option(3.0, help="minutes of stationary noise"),
    music_minutes: float = typer.Option(3.0, help="minutes of synthetic music"),
    stride: int = typer.Option(4, help="keep windows ending at every STRIDE-th feature frame"),
    seed: int = typer.Option(0),
) -> None:
    """(Re)build the calibration bank behind `sensitivity` (FA/h): background window embeddings, never recorded speech."""
    from openkws.training.calibration_bank import build_bank

    if stride < 1 or min(tts_minutes, noise_minutes, music_minutes) < 0:
        raise typer.BadParameter("stride must be >= 1 and minutes >= 0")
    _setup_logging(True)
    path = build_bank(model, tts_minutes * 60, noise_minutes * 60, music_minutes * 60, stride, seed)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if (model / "model.json").is_file() and "whitening" in json.loads((model / "model.json").read_text())[
        "files"
    ]:
        from openkws.engine.whitening import WHITENING_FILE, load_whitening_modes
        from openkws.training.export import write_whitening

        write_whitening(model, load_whitening_modes(model / WHITENING_FILE))  # it follows the new bank
        typer.echo(f"refreshed {model / WHITENING_FILE} from the new bank")

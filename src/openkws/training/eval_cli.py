"""`openkws eval ...`: pairs (EER/AUC/AP), encoder cost, streams (FRR at fixed FA/h) and the calibration bank.

Imported by every `openkws` invocation, so nothing heavy (torch, onnx) is imported at module level:
each command imports its module inside (see :mod:`openkws.training.model_cli`).

Examples::

    openkws eval pairs --model models/default --manifest data/eval/asterisk/manifest.csv --out runs/eval/asterisk
    openkws eval pairs --model models/default --manifest data/synth/manifest.csv --split test --baselines
    openkws eval cost --model models/default
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from openkws.engine.decision import DecisionMode
from openkws.settings import packaged_model_dir
from openkws.training.model_cli import setup_logging

eval_app = typer.Typer(no_args_is_help=True, add_completion=False)


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
    setup_logging(False)
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
    setup_logging(True)
    path = build_bank(model, tts_minutes * 60, noise_minutes * 60, music_minutes * 60, stride, seed)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if (model / "model.json").is_file() and "whitening" in json.loads((model / "model.json").read_text())[
        "files"
    ]:
        from openkws.engine.whitening import WHITENING_FILE, load_whitening_modes
        from openkws.training.export import write_whitening

        write_whitening(model, load_whitening_modes(model / WHITENING_FILE))  # it follows the new bank
        typer.echo(f"refreshed {model / WHITENING_FILE} from the new bank")

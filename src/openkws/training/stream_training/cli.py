"""``openkws train stream ...``: the stream training set and the stream fine-tune (issue 21)."""

from __future__ import annotations

from pathlib import Path

import typer

stream_app = typer.Typer(no_args_is_help=True, add_completion=False)


@stream_app.command("data")
def stream_data(
    out: Path = typer.Option(Path("data/stream_train"), help="writes <out>/train and <out>/val shards"),
    streams: int = typer.Option(16_384, min=1, help="training streams (train voices)"),
    val_streams: int = typer.Option(1_536, min=1, help="validation streams (held-out voices)"),
    workers: int = typer.Option(2, min=1),
    seed: int = typer.Option(0),
) -> None:
    """Render TTS streams with keyword phrases inside carrier text (resumable, shard by shard)."""
    from openkws.training.stream_training.render import build
    from openkws.training.stream_training.sources import build_sources, train_items, val_items

    src = build_sources(seed)
    typer.echo(
        f"{len(src.targets)} train targets, {len(src.val_targets)} validation targets, "
        f"{len(src.carriers)} carrier chunks, {len(src.train_voices)} train voices"
    )
    n_val = build(val_items(src, val_streams, seed + 1), out / "val", workers)
    n_train = build(train_items(src, streams, seed), out / "train", workers)
    typer.echo(f"wrote {n_val} validation and {n_train} training streams under {out}")


@stream_app.command("fit")
def stream_fit(
    out: Path = typer.Option(..., help="run directory: checkpoints/best.pt, last.pt, log.csv"),
    data: Path = typer.Option(Path("data/stream_train"), help="the stream set (`openkws train stream data`)"),
    init_from: Path = typer.Option(None, help="exported model to start from (default: the packaged model)"),
    steps: int = typer.Option(1500, min=1),
    mine: bool = typer.Option(False, "--mine/--no-mine", help="row M: negatives mined from the phrase bank"),
    bank_size: int = typer.Option(50_000, min=1000),
    lr: float = typer.Option(1e-4, min=0.0),
    bg_windows: int = typer.Option(
        0, min=0, help="with --mine: negative windows per step held below the bank"
    ),
    freeze_frames: bool = typer.Option(False, help="train the pooling head and text encoder only"),
    corpus: str = typer.Option(
        None, help="row J: a training config (e.g. joint) whose cached clips add its objective each step"
    ),
    clip_weight: float = typer.Option(1.0, min=0.0, help="with --corpus: the clip term's weight"),
    val_streams: int = typer.Option(256, min=1, help="held-out-voice validation streams"),
    threads: int = typer.Option(2, min=1),
    val_every: int = typer.Option(150, min=1),
    resume: bool = typer.Option(True, "--resume/--restart"),
) -> None:
    """Fine-tune on keyword-end windows of the stream set (resumable); export with `openkws export`."""
    from openkws.training.stream_training.trainer import FitConfig, fit

    kw = {"init_from": init_from} if init_from else {}
    fc = FitConfig(
        data=data,
        out=out,
        steps=steps,
        mine=mine,
        bank_size=bank_size,
        lr=lr,
        threads=threads,
        val_every=val_every,
        bg_windows=bg_windows,
        freeze_frames=freeze_frames,
        corpus=corpus,
        clip_weight=clip_weight,
        val_streams=val_streams,
        **kw,
    )
    best = fit(fc, resume=resume)
    typer.echo(f"best checkpoint: {best}\nexport: openkws export --checkpoint {best} --out {out}/model")


@stream_app.command("corpus-manifest")
def stream_corpus_manifest(
    manifest: Path = typer.Option(Path("data/synth/manifest.csv"), help="a synthesis manifest"),
    out: Path = typer.Option(Path("data/joint/manifest.csv"), help="the copy row J trains on"),
) -> None:
    """Row J's clip corpus: the manifest less the stream set's validation targets (train split)."""
    from openkws.training.stream_training.corpus import corpus_manifest
    from openkws.training.stream_training.sources import build_sources

    if not manifest.is_file():
        raise typer.BadParameter(
            f"{manifest} not found; render it with `openkws data synth`", param_hint="--manifest"
        )
    kept, dropped = corpus_manifest(manifest, out, set(build_sources().val_targets))
    typer.echo(f"wrote {out}: {kept} clips ({dropped} train clips of validation targets left out)")


@stream_app.command("verifier")
def stream_verifier(
    out: Path = typer.Option(Path("runs/verifier"), help="verifier.pt and report.json"),
    data: Path = typer.Option(
        Path("data/stream_train2"), help="the stream set (`openkws train stream data`)"
    ),
    init_from: Path = typer.Option(None, help="stage-1 exported model (default: the packaged model)"),
    candidate: float = typer.Option(0.45, min=-1.0, max=1.0, help="stage-1 candidate threshold"),
    steps: int = typer.Option(4000, min=1),
    threads: int = typer.Option(2, min=1),
    limit: int = typer.Option(0, min=0, help="first N streams of each split only (a quick check)"),
    evaluate_only: bool = typer.Option(False, help="validate <out>/verifier.pt again, no training"),
) -> None:
    """Row V: train the phoneme-level verifier on stage-1 candidates and report validation FRR."""
    import json

    from openkws.training.stream_training.verifier_fit import VerifierConfig, run

    kw = {"init_from": init_from} if init_from else {}
    vc = VerifierConfig(
        data=data,
        out=out,
        candidate=candidate,
        steps=steps,
        threads=threads,
        limit=limit,
        evaluate_only=evaluate_only,
        **kw,
    )
    report = run(vc)
    typer.echo(json.dumps({k: report[k] for k in ("train", "val")}, indent=2))

"""Registers the training-side sub-commands (`data`, `train`, `eval`, `export`) on the root CLI.

Keep module-level imports light (no torch): every `openkws` invocation imports this file.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from openkws.training.data.cli import app as data_app

    app.add_typer(data_app, name="data", help="Synthesize the training corpus and build evaluation sets.")
    try:
        from openkws.training.eval_cli import eval_app
        from openkws.training.model_cli import export_app, train_app
    except ImportError:
        return
    from openkws.training.model_tools_cli import register as register_model_tools
    from openkws.training.stream_training.cli import stream_app

    register_model_tools(eval_app, export_app)

    train_app.add_typer(
        stream_app, name="stream", help="Train for the stream: keyword-end windows, mined negatives."
    )
    app.add_typer(train_app, name="train", help="Train encoders.")
    app.add_typer(eval_app, name="eval", help="Evaluate a model on pairs or streams.")
    app.add_typer(export_app, name="export", help="Export trained encoders to ONNX + model.json.")

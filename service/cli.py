"""`openkws` command line. Service commands live here; training commands are added when installed.

Sub-apps are imported at start-up, so their modules must not import torch at module level.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="openkws: open-vocabulary keyword spotting")


def _register_training_apps() -> None:
    try:
        from training.cli import register
    except ImportError:  # runtime-only install (no `train` extra): serving commands only
        return
    register(app)


_register_training_apps()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""`openkws` command line. Service commands live here; training commands are added when installed.

Sub-apps are imported at start-up, so their modules must not import torch at module level.

Service commands::

    openkws serve [--host H] [--port P] [--model-dir DIR] [--workers N]  # the REST + websocket server
    openkws keywords add "hey jarvis" [--threshold 0.6] [--proxy text|tts|both] [--phonemes "..."]
    openkws keywords list | rm ID... | set ID --threshold T     # talk to a running server
    openkws keywords import FILE | export FILE                  # YAML or CSV keyword lists
    openkws detect FILE [--plot scores.png]                     # all detections in a file
    openkws stream FILE | --mic                                 # live events over the websocket
    openkws wyoming --uri tcp://127.0.0.1:10400                 # wake words for Home Assistant
    openkws listen "hey jarvis"                                 # the microphone, in this process
    openkws keys create --tenant T --scope admin|stream         # API keys (in the server's database)
    openkws keys list [--tenant T] | openkws keys revoke KEY_ID

Client commands send ``--api-key`` (or ``OPENKWS_API_KEY``) as ``Authorization: Bearer``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from openkws.cli.common import DEFAULT_URL, fail, settings_from
from openkws.cli.detect import detect, stream
from openkws.cli.keys import keys_app
from openkws.cli.keywords import ProxyChoice, keywords_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="openkws: open-vocabulary keyword spotting",
)
app.add_typer(keywords_app, name="keywords")
app.add_typer(keys_app, name="keys")
__all__ = ["DEFAULT_URL", "ProxyChoice", "app", "main"]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default OPENKWS_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default OPENKWS_PORT or 8000)")] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="model directory (default OPENKWS_MODEL_DIR or the packaged model)")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="where the SQLite keyword store lives (default OPENKWS_DATA_DIR or ~/.local/share/openkws)"
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql://user:pw@host/db")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="engine processes behind the port (default OPENKWS_WORKERS, else 0: one per usable core; "
            "1: a single process)",
        ),
    ] = None,
) -> None:
    """Run the REST + websocket server (settings: flags, else OPENKWS_* environment variables)."""

    from openkws.engine.model_spec import ModelContractError, load_spec
    from openkws.server import run as server

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "model_dir": model_dir,
            "data_dir": data_dir,
            "database_url": database_url,
            "workers": workers,
        }.items()
        if v is not None
    }
    settings = settings_from(overrides)
    try:
        load_spec(settings.model_dir, verify_hashes=False)  # fail fast with one clear line
    except ModelContractError as e:
        fail(str(e), 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.run(settings, log_level)


# Client commands (openkws.cli.detect), listed after `serve` as before the split.
app.command()(detect)
app.command()(stream)


@app.command()
def wyoming(
    uri: Annotated[
        str, typer.Option(help="where to listen: tcp://HOST:PORT, unix://PATH or stdio://")
    ] = "tcp://127.0.0.1:10400",
    model_dir: Annotated[
        Path | None, typer.Option(help="model directory (default: the packaged model)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="the keyword database's directory (the REST server's)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the REST server's database")
    ] = None,
    tenant: Annotated[
        str, typer.Option(help="whose keywords are the wake words (auth off: 'default')")
    ] = "default",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Serve the enrolled keywords as wake words over the Wyoming protocol (Home Assistant)."""

    from openkws.engine.model_spec import ModelContractError
    from openkws.wyoming import WyomingConfig, WyomingError, serve_wyoming

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve_wyoming(WyomingConfig(uri, model_dir, data_dir, database_url, tenant))
    except (WyomingError, ModelContractError) as e:
        fail(str(e), 2)


@app.command()
def listen(
    keywords: Annotated[list[str], typer.Argument(help="keywords to listen for, e.g. 'hey jarvis'")],
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="cosine threshold (default: the model's)")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="input device name or index (default: the system's)")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option(min=0.1, help="stop after this long (default: Ctrl-C)")
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="model directory (default: the packaged model)")
    ] = None,
) -> None:
    """Listen to the microphone in this process: a live level meter, and each detection as it happens."""
    from openkws.cli.listen import ListenError
    from openkws.cli.listen import listen as run_listen
    from openkws.text import G2PError

    try:
        run_listen(keywords, threshold=threshold, device=device, seconds=seconds, model_dir=model_dir)
    except (ListenError, G2PError) as e:
        fail(str(e))


def _register_training_apps() -> None:

    try:  # imported by name so that type-checking the service does not descend into training code
        training_cli = importlib.import_module("openkws.training.cli")
    except ImportError:  # runtime-only install (no `train` extra): serving commands only
        return
    training_cli.register(app)


_register_training_apps()


# Modules that only an extra installs -> that extra (a command that needs one names it, issue 23).
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        (
            "torch",
            "torchaudio",
            "livekit_wakeword",
            "onnx",
            "piper",
            "g722",
            "pyroomacoustics",
            "wordfreq",
            "scipy",
            "parselmouth",
            "pedalboard",
        ),
        "train",
    ),
    "matplotlib": "plot",
    "sounddevice": "mic",
    "psycopg": "postgres",
    "pocketsphinx": "bench",
    "pyopen_wakeword": "bench",
}


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one-line advice for a module an extra provides, else None.

    >>> missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
    "this command needs torch, which is not installed; pip install 'openkws[train]'"
    """
    root = (e.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(root)
    return (
        None
        if extra is None
        else f"this command needs {root}, which is not installed; pip install 'openkws[{extra}]'"
    )


def main() -> None:
    """The console entry point: an error nobody anticipated is still one line (OPENKWS_DEBUG=1: traceback)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if os.environ.get("OPENKWS_DEBUG"):
            raise
        advice = missing_extra(e) if isinstance(e, ModuleNotFoundError) else None
        if advice is not None:
            typer.secho(f"error: {advice}", fg=typer.colors.RED, err=True)
            sys.exit(1)
        typer.secho(
            f"error: unexpected {type(e).__name__}: {e}; rerun with OPENKWS_DEBUG=1 for the traceback and "
            "report it",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)

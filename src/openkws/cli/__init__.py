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
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from openkws.cli.common import DEFAULT_URL, KeyOpt, UrlOpt, fail, handled
from openkws.cli.common import client as _client
from openkws.cli.keywords import ProxyChoice, keywords_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="openkws: open-vocabulary keyword spotting",
)
app.add_typer(keywords_app, name="keywords")
keys_app = typer.Typer(
    no_args_is_help=True, help="Create, list and revoke API keys (writes the server's database)."
)
app.add_typer(keys_app, name="keys")

DataDirOpt = Annotated[
    Path | None, typer.Option(help="the server's data directory (default OPENKWS_DATA_DIR)")
]
DbUrlOpt = Annotated[
    str | None, typer.Option(help="the server's database URL (default OPENKWS_DATABASE_URL)")
]
_fail = fail
__all__ = ["DEFAULT_URL", "ProxyChoice", "app", "main"]


def _settings(overrides: dict[str, Any]) -> Any:
    """Settings from flags over ``OPENKWS_*`` variables; a bad value is one line naming the variable."""
    from pydantic import ValidationError

    from openkws.settings import Settings

    try:
        return Settings.model_validate(overrides)
    except ValidationError as e:
        problems = [
            f"OPENKWS_{str(err['loc'][0]).upper()}={err['input']!r}: {err['msg']}"
            if err["loc"]
            else err["msg"]
            for err in e.errors()
        ]
        _fail("invalid setting " + "; ".join(problems) + " (docs/SERVICE.md lists the settings)", 2)


def _api_keys(data_dir: Path | None, database_url: str | None) -> Any:
    from openkws.keywords.store import KeywordStore
    from openkws.server.auth import ApiKeys

    overrides = {
        k: v for k, v in {"data_dir": data_dir, "database_url": database_url}.items() if v is not None
    }
    settings = _settings(overrides)
    return ApiKeys(KeywordStore(settings.resolved_database_url(), settings.sqlite_synchronous))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[
        str, typer.Option(help="tenant the key belongs to (its keywords are the only ones it sees)")
    ],
    scope: Annotated[
        str, typer.Option(help="admin: manage keywords and keys, and detect; stream: detect only")
    ],
    name: Annotated[str | None, typer.Option(help="a label for the key")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    try:
        k = _api_keys(data_dir, database_url).create(tenant, scope, name)
    except ValueError as e:
        _fail(str(e), 2)
    typer.echo(k.token)
    typer.echo(
        f"key {k.key_id}: tenant {k.tenant!r}, scope {k.scope!r}; store it now, it cannot be shown again",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """List API keys (ids, tenants, scopes; never the secrets)."""
    for k in _api_keys(data_dir, database_url).list(tenant):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(
            f"{k.key_id}\t{k.tenant}\t{k.scope}\t{state}\tcreated {k.created_at:%Y-%m-%d %H:%M}\t{k.name or ''}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_ids: Annotated[list[str], typer.Argument(help="key ids (from `openkws keys list`)")],
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Revoke API keys: requests with them fail from now on."""
    keys = _api_keys(data_dir, database_url)
    for key_id in key_ids:
        if not keys.revoke(key_id):
            _fail(f"no API key {key_id!r}; `openkws keys list` shows the keys")
        typer.echo(f"revoked {key_id}")


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
    settings = _settings(overrides)
    try:
        load_spec(settings.model_dir, verify_hashes=False)  # fail fast with one clear line
    except ModelContractError as e:
        _fail(str(e), 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.run(settings, log_level)


def _print_event(ev: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(ev))
        return
    t = ev.get("type")
    if t == "detection":
        typer.secho(
            f"[{ev['start_ms'] / 1000:7.2f}s–{ev['end_ms'] / 1000:6.2f}s] {ev['text']!r} "
            f"(id {ev['keyword_id']}) score {ev['score']:.3f} ≥ {ev['threshold']:.2f}",
            fg=typer.colors.GREEN,
        )
    elif t == "near_miss":
        cands = ", ".join(f"{c['text']!r} {c['score']:.3f}<{c['threshold']:.2f}" for c in ev["candidates"])
        typer.echo(f"[{ev['time_ms'] / 1000:7.2f}s] near miss: {cands}")
    elif t == "ready":
        typer.echo(f"streaming to {ev['model_version']} ({ev['keywords']} keywords)…", err=True)
    elif t == "summary":
        typer.echo(f"done: {ev['audio_ms'] / 1000:.2f} s of audio, {ev['detections']} detection(s)", err=True)
    elif t == "error":
        typer.secho(f"error {ev['code']}: {ev['message']}", fg=typer.colors.RED, err=True)


@app.command()
def detect(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="WAV, FLAC or OGG (Vorbis or Opus) file")],
    url: UrlOpt = DEFAULT_URL,
    debug: Annotated[bool, typer.Option(help="also print near misses")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON response")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="also draw every keyword's score over time, thresholds and detections to this PNG "
            "(needs matplotlib: pip install 'openkws[plot]')",
        ),
    ] = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload a file to POST /v1/detect and print every detection (the server's keywords and thresholds)."""
    from openkws.audiofile import check_audio_file

    with handled():
        check_audio_file(file)  # a bad file is named here, before any upload
    if plot is not None:
        _check_plot_target(plot)
    with _client(url, api_key) as c, handled():
        res = c.detect(file, debug=debug or plot is not None, trace=plot is not None)
    if plot is not None:
        _draw(res, plot, file)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    for d in res["detections"]:
        _print_event({"type": "detection", **d}, False)
    for n in res["near_misses"] if debug else []:
        _print_event({"type": "near_miss", **n}, False)
    typer.echo(f"{len(res['detections'])} detection(s) in {res['duration_ms'] / 1000:.2f} s", err=True)


def _check_plot_target(plot: Path) -> None:
    """Fail before the upload: no matplotlib, a name that is not .png, a missing folder."""
    from openkws.plot import PlotUnavailable, _pyplot

    if plot.suffix.lower() != ".png":
        fail(f"--plot {plot}: give a .png file name", 2)
    if not plot.parent.is_dir():
        fail(f"--plot {plot}: folder {plot.parent} does not exist", 2)
    try:
        _pyplot()
    except PlotUnavailable as e:
        fail(str(e))


def _draw(res: dict[str, Any], plot: Path, file: Path) -> None:
    from openkws.plot import plot_trace, trace_from_response

    try:
        plot_trace(trace_from_response(res), plot, title=f"{file.name}: keyword scores over time")
    except ValueError as e:
        fail(str(e))
    typer.echo(f"plot written to {plot}", err=True)


@app.command()
def stream(
    file: Annotated[Path | None, typer.Argument(dir_okay=False, help="audio file to stream")] = None,
    mic: Annotated[
        bool, typer.Option("--mic", help="stream the default microphone instead of a file")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    chunk_ms: Annotated[int, typer.Option(min=10, max=1000, help="audio per websocket frame")] = 100,
    realtime: Annotated[
        bool, typer.Option(help="pace a file in real time (--no-realtime: as fast as possible)")
    ] = True,
    seconds: Annotated[float | None, typer.Option(help="stop the microphone after this long")] = None,
    debug: Annotated[bool, typer.Option(help="also print near misses")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print every server message as JSON")] = False,
    api_key: KeyOpt = None,
) -> None:
    """Stream a file or the microphone over WS /v1/stream and print events as they arrive."""
    from openkws.audiofile import check_audio_file
    from openkws.client import OpenKWSError

    if (file is None) == (not mic):
        fail("give exactly one of FILE or --mic", 2)
    if file is not None:
        with handled():
            check_audio_file(file)
    with _client(url, api_key) as c, handled():
        try:
            events = (
                c.stream_microphone(chunk_ms=chunk_ms, seconds=seconds, debug=debug)
                if mic
                else c.stream_file(file, chunk_ms=chunk_ms, realtime=realtime, debug=debug)
            )
            for ev in events:
                _print_event(ev, as_json)
        except OSError as e:  # the connection dropped mid-stream
            fail(f"cannot reach {url}: {e}")
        except OpenKWSError:  # a RuntimeError too, but `handled` words it (no "0 server_unreachable")
            raise
        except RuntimeError as e:  # e.g. --mic without sounddevice
            fail(str(e))


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
    ),  # fmt: skip
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

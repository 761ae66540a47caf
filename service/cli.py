"""`openkws` command line. Service commands live here; training commands are added when installed.

Sub-apps are imported at start-up, so their modules must not import torch at module level.

Service commands::

    openkws serve [--host H] [--port P] [--model-dir DIR]      # the REST + websocket server
    openkws keywords add "hey jarvis" [--threshold 0.6] [--proxy text|tts|both]  # talk to a running server
    openkws keywords list | openkws keywords rm ID...
    openkws detect FILE                                         # all detections in a file
    openkws stream FILE | --mic                                 # live events over the websocket
    openkws keys create --tenant T --scope admin|stream         # API keys (in the server's database)
    openkws keys list [--tenant T] | openkws keys revoke KEY_ID

Client commands send ``--api-key`` (or ``OPENKWS_API_KEY``) as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="openkws: open-vocabulary keyword spotting")
keywords_app = typer.Typer(no_args_is_help=True, help="Enroll, list and remove keywords on a running server.")
app.add_typer(keywords_app, name="keywords")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (writes the server's database).")
app.add_typer(keys_app, name="keys")

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOpt = Annotated[str, typer.Option("--url", envvar="OPENKWS_URL", help="server base URL")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="OPENKWS_API_KEY",
                                            help="API key (needed when the server runs with OPENKWS_AUTH=on)")]
DataDirOpt = Annotated[Path | None, typer.Option(help="the server's data directory (default OPENKWS_DATA_DIR)")]
DbUrlOpt = Annotated[str | None, typer.Option(help="the server's database URL (default OPENKWS_DATABASE_URL)")]


class ProxyChoice(str, Enum):
    """``openkws.engine.acoustic_proxy.PROXY_MODES`` as CLI choices (the server validates them too)."""

    text = "text"
    tts = "tts"
    both = "both"


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _client(url: str, api_key: str | None = None) -> Any:
    from .client import OpenKWSClient

    return OpenKWSClient(url, api_key=api_key)


def _api_keys(data_dir: Path | None, database_url: str | None) -> Any:
    from .auth import ApiKeys
    from .settings import Settings
    from .store import KeywordStore

    overrides = {k: v for k, v in {"data_dir": data_dir, "database_url": database_url}.items() if v is not None}
    settings = Settings.model_validate(overrides)
    return ApiKeys(KeywordStore(settings.resolved_database_url(), settings.sqlite_synchronous))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant the key belongs to (its keywords are the only ones it sees)")],
    scope: Annotated[str, typer.Option(help="admin: manage keywords and keys, and detect; stream: detect only")],
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
    typer.echo(f"key {k.key_id}: tenant {k.tenant!r}, scope {k.scope!r}; store it now, it cannot be shown again",
               err=True)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """List API keys (ids, tenants, scopes; never the secrets)."""
    for k in _api_keys(data_dir, database_url).list(tenant):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}\t{k.tenant}\t{k.scope}\t{state}\tcreated {k.created_at:%Y-%m-%d %H:%M}\t{k.name or ''}")


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
    model_dir: Annotated[Path | None, typer.Option(help="model directory (default OPENKWS_MODEL_DIR or models/default)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where the SQLite keyword store lives")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql://user:pw@host/db")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the REST + websocket server (settings: flags, else OPENKWS_* environment variables)."""
    import logging

    from . import server
    from .engine.model_spec import ModelContractError, load_spec
    from .settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "model_dir": model_dir,
                                                   "data_dir": data_dir, "database_url": database_url}.items()
                                 if v is not None}
    settings = Settings.model_validate(overrides)
    try:
        load_spec(settings.model_dir, verify_hashes=False)  # fail fast with one clear line
    except ModelContractError as e:
        _fail(str(e), 2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.run(settings, log_level)


@keywords_app.command("add")
def keywords_add(
    texts: Annotated[list[str], typer.Argument(help="keyword texts, e.g. 'hey jarvis'")],
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="cosine threshold")] = None,
    proxy: Annotated[ProxyChoice | None, typer.Option(
        help="keyword proxy: text (default), tts (from espeak-ng/flite renditions; better on confusable keywords, "
             "~0.5 s more per keyword) or both")] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Enroll keywords; prints id, normalized text, phonemes, proxy and any confusable keywords."""
    from .client import OpenKWSError

    mode = None if proxy is None else proxy.value
    with _client(url, api_key) as c:
        try:
            items = ([c.add_keyword(texts[0], threshold, proxy=mode)] if len(texts) == 1
                     else c.add_keywords(texts, threshold, proxy=mode))
        except OpenKWSError as e:
            _fail(e.message)
        for kw in items:
            state = "enrolled" if kw["created"] else "already enrolled"
            typer.echo(f"{kw['id']}\t{kw['text']}\t{' '.join(kw['phonemes'])}\tthreshold={kw['threshold']}\t"
                       f"{_fa_h(kw)}proxy={kw['proxy']}\t({state})")
            for w in kw.get("warnings", []):
                typer.secho(f"  warning: {w}", fg=typer.colors.YELLOW)
            for cf in kw["confusable_with"]:
                typer.secho(f"  confusable with {cf['id']} {cf['text']!r}: cosine {cf['cosine']:.2f}, "
                            f"phoneme distance {cf['phoneme_distance']:.2f} ({cf['reason']})", fg=typer.colors.YELLOW)


@keywords_app.command("list")
def keywords_list(url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None,
                  as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List enrolled keywords."""
    from .client import OpenKWSError

    with _client(url, api_key) as c:
        try:
            items = c.list_keywords()
        except OpenKWSError as e:
            _fail(e.message)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for kw in items:
        typer.echo(f"{kw['id']}\t{kw['text']}\tthreshold={kw['threshold']}\t{_fa_h(kw)}proxy={kw['proxy']}\t"
                   f"{' '.join(kw['phonemes'])}")


def _fa_h(kw: dict[str, object]) -> str:
    """``expected_fa_per_hour=...`` and a tab, when the server's model has a calibration bank."""
    fa = kw.get("expected_fa_per_hour")
    return "" if fa is None else f"expected_fa_per_hour={fa:.3g}\t"


@keywords_app.command("rm")
def keywords_rm(ids: Annotated[list[int], typer.Argument(help="keyword ids")], url: UrlOpt = DEFAULT_URL,
                api_key: KeyOpt = None) -> None:
    """Delete keywords by id."""
    from .client import OpenKWSError

    with _client(url, api_key) as c:
        for i in ids:
            try:
                c.delete_keyword(i)
                typer.echo(f"deleted {i}")
            except OpenKWSError as e:
                _fail(e.message)


def _print_event(ev: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(ev))
        return
    t = ev.get("type")
    if t == "detection":
        typer.secho(f"[{ev['start_ms'] / 1000:7.2f}s–{ev['end_ms'] / 1000:6.2f}s] {ev['text']!r} "
                    f"(id {ev['keyword_id']}) score {ev['score']:.3f} ≥ {ev['threshold']:.2f}", fg=typer.colors.GREEN)
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
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="WAV, FLAC or OGG file")],
    url: UrlOpt = DEFAULT_URL,
    debug: Annotated[bool, typer.Option(help="also print near misses")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON response")] = False,
    api_key: KeyOpt = None,
) -> None:
    """Upload a file to POST /v1/detect and print every detection."""
    from .client import OpenKWSError

    with _client(url, api_key) as c:
        try:
            res = c.detect(file, debug=debug)
        except OpenKWSError as e:
            _fail(e.message)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    for d in res["detections"]:
        _print_event({"type": "detection", **d}, False)
    for n in res["near_misses"]:
        _print_event({"type": "near_miss", **n}, False)
    typer.echo(f"{len(res['detections'])} detection(s) in {res['duration_ms'] / 1000:.2f} s", err=True)


@app.command()
def stream(
    file: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="audio file to stream")] = None,
    mic: Annotated[bool, typer.Option("--mic", help="stream the default microphone instead of a file")] = False,
    url: UrlOpt = DEFAULT_URL,
    chunk_ms: Annotated[int, typer.Option(min=10, max=1000, help="audio per websocket frame")] = 100,
    realtime: Annotated[bool, typer.Option(help="pace a file in real time (--no-realtime: as fast as possible)")] = True,
    seconds: Annotated[float | None, typer.Option(help="stop the microphone after this long")] = None,
    debug: Annotated[bool, typer.Option(help="also print near misses")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print every server message as JSON")] = False,
    api_key: KeyOpt = None,
) -> None:
    """Stream a file or the microphone over WS /v1/stream and print events as they arrive."""
    from .client import StreamClosed

    if (file is None) == (not mic):
        _fail("give exactly one of FILE or --mic", 2)
    with _client(url, api_key) as c:
        try:
            events = (c.stream_microphone(chunk_ms=chunk_ms, seconds=seconds, debug=debug) if mic
                      else c.stream_file(file, chunk_ms=chunk_ms, realtime=realtime, debug=debug))
            for ev in events:
                _print_event(ev, as_json)
        except StreamClosed as e:
            _fail(str(e))
        except RuntimeError as e:  # e.g. --mic without sounddevice
            _fail(str(e))
        except OSError as e:
            _fail(f"cannot reach {url}: {e}")


def _register_training_apps() -> None:
    import importlib

    try:  # imported by name so that type-checking the service does not descend into training code
        training_cli = importlib.import_module("openkws.training.cli")
    except ImportError:  # runtime-only install (no `train` extra): serving commands only
        return
    training_cli.register(app)


_register_training_apps()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

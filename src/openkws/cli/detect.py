"""`openkws detect` and `openkws stream`: send audio to a running server and print its events
(`detect --plot` also draws the scores over time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from openkws.cli.common import DEFAULT_URL, KeyOpt, UrlOpt, client, fail, handled


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
    with client(url, api_key) as c, handled():
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
    with client(url, api_key) as c, handled():
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

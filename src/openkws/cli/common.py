"""What every `openkws` command shares: the server URL and API key options, and one-line errors.

A command never shows a traceback for something the user can fix: :func:`handled` turns the
client's, the audio reader's and the keyword file's errors into ``error: <what> ; <what to do>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOpt = Annotated[str, typer.Option("--url", envvar="OPENKWS_URL", help="server base URL")]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="OPENKWS_API_KEY",
        help="API key (needed when the server runs with OPENKWS_AUTH=on)",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Errors with a message for people -> one line on stderr and exit status 1."""
    # Imported on use: httpx (client) and yaml (keyfile) cost ~0.25 s that `openkws serve` never needs.
    from openkws.audio import AudioError
    from openkws.client import OpenKWSError, StreamClosed
    from openkws.keywords.keyfile import KeyfileError

    try:
        yield
    except OpenKWSError as e:
        fail(e.message)
    except (AudioError, KeyfileError, StreamClosed) as e:
        fail(str(e))


def client(url: str, api_key: str | None = None) -> Any:
    from openkws.client import OpenKWSClient

    with handled():
        return OpenKWSClient(url, api_key=api_key)


def settings_from(overrides: dict[str, Any]) -> Any:
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
        fail("invalid setting " + "; ".join(problems) + " (docs/SERVICE.md lists the settings)", 2)

"""`openkws keys`: create, list and revoke API keys in the server's database (only hashes are stored)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from openkws.cli.common import fail, settings_from

keys_app = typer.Typer(
    no_args_is_help=True, help="Create, list and revoke API keys (writes the server's database)."
)

DataDirOpt = Annotated[
    Path | None, typer.Option(help="the server's data directory (default OPENKWS_DATA_DIR)")
]
DbUrlOpt = Annotated[
    str | None, typer.Option(help="the server's database URL (default OPENKWS_DATABASE_URL)")
]


def _api_keys(data_dir: Path | None, database_url: str | None) -> Any:
    from openkws.keywords.store import KeywordStore
    from openkws.server.auth import ApiKeys

    overrides = {
        k: v for k, v in {"data_dir": data_dir, "database_url": database_url}.items() if v is not None
    }
    settings = settings_from(overrides)
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
        fail(str(e), 2)
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
            fail(f"no API key {key_id!r}; `openkws keys list` shows the keys")
        typer.echo(f"revoked {key_id}")

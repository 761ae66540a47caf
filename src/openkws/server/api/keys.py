"""``/v1/keys``: an admin key manages its own tenant's API keys (create, list, revoke).

Keys of other tenants are invisible: revoking one answers the same 404 as a key that does not exist.
The first admin key of a tenant comes from the CLI (``openkws keys create``), which writes to the
database directly.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from openkws.server.api.deps import AdminDep, StateDep
from openkws.server.api.errors import ApiError
from openkws.server.api.schemas import ErrorResponse
from openkws.server.auth import KeyInfo, Scope

router = APIRouter(prefix="/v1/keys", tags=["keys"])
ERRORS: dict[int | str, dict[str, object]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 422)}


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Scope = Field(description="admin: manage keywords and keys (and detect); stream: detect only")
    name: str | None = Field(None, max_length=128, description="a label, e.g. where the key is used")


class KeyOut(BaseModel):
    key_id: str = Field(description="public id of the key (not a secret)")
    tenant: str
    scope: Scope
    name: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, k: KeyInfo) -> KeyOut:
        return cls(
            key_id=k.key_id,
            tenant=k.tenant,
            scope=k.scope,
            name=k.name,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )


class KeyCreated(KeyOut):
    token: str = Field(description="the API key; shown once, only its hash is stored")


class KeyList(BaseModel):
    items: list[KeyOut]


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED, responses=ERRORS)
def create_key(body: KeyCreate, state: StateDep, principal: AdminDep) -> KeyCreated:
    """Create a key for the caller's tenant; the response carries the token once."""
    k = state.api_keys.create(principal.tenant, body.scope, body.name)
    return KeyCreated(**KeyOut.of(k).model_dump(), token=k.token)


@router.get("", response_model=KeyList, responses=ERRORS)
def list_keys(state: StateDep, principal: AdminDep) -> KeyList:
    return KeyList(items=[KeyOut.of(k) for k in state.api_keys.list(principal.tenant)])


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def revoke_key(key_id: str, state: StateDep, principal: AdminDep) -> Response:
    """Revoke a key of the caller's tenant; requests with it fail from now on (open streams run to their end)."""
    if len(key_id) > 32 or not state.api_keys.revoke(key_id, tenant=principal.tenant):
        raise ApiError(
            404, "key_not_found", f"API key {key_id[:32]!r} not found; GET /v1/keys lists this tenant's keys"
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)

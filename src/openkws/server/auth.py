"""API keys: creation, hashing, verification, scopes and tenants.

A key is ``okws_<key_id>_<secret>``: ``key_id`` (12 hex digits) is public and names the key in
listings and logs; ``secret`` is 256 random bits. The database keeps only
``sha256("openkws-api-key:" + token)``: a high-entropy token needs no slow hash (nobody can guess
2^256 candidates), and a leaked table yields no usable key. Verification compares digests with
:func:`hmac.compare_digest` (constant time).

Every verification asks the database, so a revocation counts at once. Keys it verified are also
cached for ``api_key_cache_s`` (default 60 s; by a hash of the token, never the token), and while the
database is away a cached key is accepted: a replica keeps authenticating its recent callers through
an outage. Revocation also drops the key from the cache (on the revoking replica, and on every
PostgreSQL replica through the change feed), so a key revoked before an outage is not accepted in it.

Scopes: ``admin`` manages the tenant's keywords and keys and may also detect; ``stream`` may only
detect (``WS /v1/stream``, ``POST /v1/detect``). Every key belongs to one tenant, and every request
made with it sees only that tenant's keywords.

Example:
    >>> from openkws.keywords.store import KeywordStore
    >>> keys = ApiKeys(KeywordStore("sqlite://"))
    >>> created = keys.create("acme", "stream", name="kiosk")
    >>> created.token.startswith("okws_" + created.key_id + "_")
    True
    >>> p = keys.verify(created.token)
    >>> (p.tenant, p.scope, p.allows("admin"), p.allows("stream"))
    ('acme', 'stream', False, True)
    >>> keys.verify(created.token[:-1] + "x") is None
    True
    >>> keys.revoke(created.key_id, tenant="acme"), keys.verify(created.token)
    (True, None)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from openkws.engine.spotter import DEFAULT_TENANT
from openkws.keywords import MAX_TENANT_CHARS
from openkws.keywords.availability import StoreUnavailable
from openkws.keywords.schema import ApiKeyTable
from openkws.keywords.store import KeywordStore

Scope = Literal["admin", "stream"]
SCOPES: tuple[Scope, ...] = ("admin", "stream")
TOKEN_PREFIX = "okws"
KEY_ID_HEX = 12
SECRET_BYTES = 32
_HASH_DOMAIN = b"openkws-api-key:"
TENANT_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_TENANT_CHARS - 1}}}$")
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{20,128}})$")
_DUMMY_HASH = hashlib.sha256(b"never-a-key").hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant whose keywords they see, their scope, and the key (None: auth off)."""

    tenant: str
    scope: Scope
    key_id: str | None = None

    def allows(self, needed: Scope) -> bool:
        return self.scope == "admin" or self.scope == needed

    @property
    def limit_key(self) -> str | None:
        """What per-key limits (streams, enrollment rate) count against; None with auth off."""
        return self.key_id


LOCAL = Principal(DEFAULT_TENANT, "admin", None)  # every caller when auth is off


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    scope: Scope
    name: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class CreatedKey(KeyInfo):
    token: str  # shown once; only its hash is stored


def hash_token(token: str) -> str:
    return hashlib.sha256(_HASH_DOMAIN + token.encode()).hexdigest()


def check_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} is invalid; use 1-{MAX_TENANT_CHARS} characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    return tenant


def check_scope(scope: str) -> Scope:
    for known in SCOPES:
        if scope == known:
            return known
    raise ValueError(f"scope {scope!r} is invalid; use one of {', '.join(SCOPES)}")


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else (t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc))


def _info(r: ApiKeyTable) -> KeyInfo:
    created = _utc(r.created_at)
    assert created is not None
    return KeyInfo(r.key_id, r.tenant, check_scope(r.scope), r.name, created, _utc(r.revoked_at))


DEFAULT_CACHE_TTL_S = 60.0
OUTAGE_RECHECK_S = 1.0  # after a database failure, serve cached keys this long before asking again
CACHE_ENTRIES = 10_000  # LRU bound: only valid keys are cached, so this is the active-key count


class ApiKeys:
    """Key repository in the keyword store's database. Synchronous: call from worker threads.
    ``verify`` raises :class:`~openkws.keywords.availability.StoreUnavailable` while the database is
    away for a key it has not verified in the last ``cache_ttl_s``."""

    def __init__(self, store: KeywordStore, cache_ttl_s: float = DEFAULT_CACHE_TTL_S) -> None:
        self._store = store
        self._sessions = store.sessions
        self.cache_ttl_s = cache_ttl_s
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()  # token hash -> (t, who)
        self._cache_lock = threading.Lock()

    def _cached(self, digest: str) -> Principal | None:
        with self._cache_lock:
            hit = self._cache.get(digest)
            if hit is None:
                return None
            if time.monotonic() - hit[0] >= self.cache_ttl_s:
                del self._cache[digest]
                return None
            self._cache.move_to_end(digest)
            return hit[1]

    def _remember(self, digest: str, principal: Principal) -> None:
        if self.cache_ttl_s <= 0:
            return
        with self._cache_lock:
            self._cache[digest] = (time.monotonic(), principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (revoked here, or changed on another replica)."""
        with self._cache_lock:
            for digest in [d for d, (_, p) in self._cache.items() if p.key_id == key_id]:
                del self._cache[digest]

    def create(self, tenant: str, scope: str, name: str | None = None) -> CreatedKey:
        tenant, sc = check_tenant(tenant), check_scope(scope)
        if name is not None and len(name) > 128:
            raise ValueError("name is longer than 128 characters")
        key_id = secrets.token_hex(KEY_ID_HEX // 2)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        now = dt.datetime.now(dt.timezone.utc)
        with self._store.guard(), self._sessions.begin() as s:
            s.add(
                ApiKeyTable(
                    key_id=key_id,
                    tenant=tenant,
                    scope=sc,
                    secret_hash=hash_token(token),
                    name=name,
                    created_at=now,
                    revoked_at=None,
                )
            )
        return CreatedKey(key_id, tenant, sc, name, now, None, token)

    def verify(self, token: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown or revoked token. The database
        decides while it answers (a revocation counts at once); while it is away, a key it verified
        in the last ``cache_ttl_s`` is accepted from the cache."""
        digest = hash_token(token)  # the cache key: a SHA-256 of the whole token, so a hit is a match
        health = self._store.health
        if not health.ok and time.monotonic() - health.checked < OUTAGE_RECHECK_S:
            cached = self._cached(digest)  # the database just failed: do not wait on it again
            if cached is not None:
                return cached
        try:
            principal = self._lookup(token, digest)
        except StoreUnavailable:
            cached = self._cached(digest)
            if cached is None:
                raise
            return cached
        if principal is None:
            with self._cache_lock:
                self._cache.pop(digest, None)
        else:
            self._remember(digest, principal)
        return principal

    def _lookup(self, token: str, digest: str) -> Principal | None:
        m = _TOKEN_RE.match(token)
        key_id = m.group(1) if m else ""
        with self._store.guard(), self._sessions() as s:
            row = s.get(ApiKeyTable, key_id) if m else None
            stored = row.secret_hash if row is not None else _DUMMY_HASH
            ok = hmac.compare_digest(stored, digest)  # always one comparison, hit or miss
            if row is None or not ok or row.revoked_at is not None:
                return None
            return Principal(row.tenant, check_scope(row.scope), row.key_id)

    def list(self, tenant: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        q = select(ApiKeyTable)
        if tenant is not None:
            q = q.where(ApiKeyTable.tenant == tenant)
        if not include_revoked:
            q = q.where(ApiKeyTable.revoked_at.is_(None))
        with self._store.guard(), self._sessions() as s:
            return [_info(r) for r in s.scalars(q.order_by(ApiKeyTable.created_at, ApiKeyTable.key_id))]

    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke (keep the row for audit); False when there is no such key (in ``tenant``)."""
        with self._store.guard(), self._sessions.begin() as s:
            row = s.get(ApiKeyTable, key_id)
            if row is None or (tenant is not None and row.tenant != tenant):
                return False
            if row.revoked_at is None:
                row.revoked_at = dt.datetime.now(dt.timezone.utc)
        self.forget(key_id)
        return True


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None when absent or not Bearer)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


WS_SUBPROTOCOL = "openkws.v1"
WS_TOKEN_PROTOCOL_PREFIX = "bearer."


def websocket_token(
    authorization: str | None, query_token: str | None, subprotocols: list[str]
) -> str | None:
    """A websocket's token: the Authorization header, else a ``bearer.<token>`` subprotocol (what a
    browser can send: ``new WebSocket(url, ["openkws.v1", "bearer." + token])``), else ``?token=``."""
    token = bearer_token(authorization)
    if token:
        return token
    for p in subprotocols:
        if p.startswith(WS_TOKEN_PROTOCOL_PREFIX) and len(p) > len(WS_TOKEN_PROTOCOL_PREFIX):
            return p[len(WS_TOKEN_PROTOCOL_PREFIX) :]
    return query_token or None


_TOKEN_IN_TEXT = re.compile(r"(token=|bearer\.)[A-Za-z0-9_.~%-]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide tokens in log lines (uvicorn logs websocket paths with their query string)."""
    return _TOKEN_IN_TEXT.sub(r"\1<redacted>", text)

"""Durable keyword registry (SQLAlchemy 2): SQLite by default (WAL journal), PostgreSQL through
``OPENKWS_DATABASE_URL``.

The store keeps text, phonemes, threshold and metadata. Text proxies are not stored: they are
recomputed by the loaded model at start-up, so one registry serves any model version. Acoustic
proxies (``proxy_mode`` ``tts`` or ``both``) cost a TTS synthesis each, so their vector is stored
with the fingerprint of the model that computed it (``proxy_vector``, ``proxy_model``); a model
with another fingerprint recomputes it (:meth:`openkws.keywords.registry.KeywordRegistry.rebuild_index`).
Columns added after a database was created are added at start-up
(:func:`openkws.keywords.schema.add_missing_columns`). Every row has a ``tenant``
(derived from the caller's API key; ``"default"`` with auth off); ``(tenant, text)`` is unique,
which makes enrollment idempotent even across replicas. The same database holds the API keys
(:class:`openkws.keywords.schema.ApiKeyTable`, hashed; see :mod:`openkws.server.auth`).

Durability: with SQLite the journal is WAL. ``synchronous=NORMAL`` makes every committed
transaction survive a killed process (the WAL frames are written before COMMIT returns and the OS
keeps them; only a power loss or kernel crash can drop the last commits); ``FULL`` also fsyncs the
WAL at every commit, which survives power loss. An acknowledged (2xx) write has been committed.

Example:
    >>> store = KeywordStore("sqlite://")
    >>> row, created = store.add("default", NewKeyword("hey jarvis", ("HH", "EY", "|", "JH"), 0.5, None))
    >>> created, row.text, row.phonemes
    (True, 'hey jarvis', ('HH', 'EY', '|', 'JH'))
    >>> store.add("default", NewKeyword("hey jarvis", ("HH",), 0.9, None))[1]
    False
    >>> store.count("default"), store.count("other")
    (1, 0)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.keywords.availability import StoreHealth, StoreUnavailable, is_unavailable, short_error
from openkws.keywords.changelog import install_change_log
from openkws.keywords.schema import DEFAULT_PROXY_MODE, KeywordTable, create_schema, make_engine


@dataclass(frozen=True)
class NewKeyword:
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    metadata: dict[str, Any] | None
    proxy_mode: ProxyMode = DEFAULT_PROXY_MODE
    proxy: np.ndarray | None = field(default=None, repr=False, compare=False)  # stored for tts/both
    proxy_model: str | None = None


@dataclass(frozen=True)
class KeywordRecord:
    id: int
    tenant: str
    text: str
    phonemes: tuple[str, ...]
    threshold: float
    metadata: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime
    proxy_mode: ProxyMode = DEFAULT_PROXY_MODE
    proxy: np.ndarray | None = field(default=None, repr=False, compare=False)  # [D] float32, tts/both
    proxy_model: str | None = None


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)  # SQLite drops the zone


def _vector_bytes(v: np.ndarray | None) -> bytes | None:
    return None if v is None else np.asarray(v, "<f4").reshape(-1).tobytes()


def _record(r: KeywordTable) -> KeywordRecord:
    return KeywordRecord(
        id=r.id,
        tenant=r.tenant,
        text=r.text,
        phonemes=tuple(r.phonemes.split()),
        threshold=r.threshold,
        metadata=r.meta,
        created_at=_utc(r.created_at),
        updated_at=_utc(r.updated_at),
        proxy_mode=cast(ProxyMode, r.proxy_mode or DEFAULT_PROXY_MODE),
        proxy=None if r.proxy_vector is None else np.frombuffer(r.proxy_vector, "<f4").astype(np.float32),
        proxy_model=r.proxy_model,
    )


class KeywordNotFound(LookupError):
    pass


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(fn: Callable[Concatenate[KeywordStore, P], R]) -> Callable[Concatenate[KeywordStore, P], R]:
    """Run a store method under :meth:`KeywordStore.guard`."""

    def run(self: KeywordStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.guard():
            return fn(self, *args, **kwargs)

    functools.update_wrapper(run, fn)
    return run


class KeywordStore:
    """Synchronous repository; call it from worker threads, never from the event loop."""

    def __init__(self, url: str, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.health = StoreHealth()
        self.engine = make_engine(url, sqlite_synchronous)
        create_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.backend == "postgresql":  # replicas follow each other's writes (openkws.keywords.changefeed)
            install_change_log(self)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Session factory (for the API key repository, which shares this database)."""
        return self._sessions

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Record the outcome in :attr:`health`, and turn a connection failure into
        :class:`StoreUnavailable` (the API key repository wraps its own sessions in this too)."""
        try:
            yield
        except DBAPIError as e:
            if not is_unavailable(e):
                raise
            self.health.failed(e)
            raise StoreUnavailable(f"the keyword database is unavailable ({short_error(e)})") from e
        self.health.succeeded()

    @_guarded
    def ping(self) -> None:
        with self._sessions() as s:
            s.execute(select(1))

    def available(self, max_age_s: float = 2.0) -> bool:
        """Whether the database answers: the last outcome when younger than ``max_age_s``, else a ping."""
        h = self.health
        if h.checked and time.monotonic() - h.checked < max_age_s:
            return h.ok
        try:
            self.ping()
        except StoreUnavailable:
            return False
        return True

    def _find(self, s: Session, tenant: str, text: str) -> KeywordTable | None:
        return s.scalars(
            select(KeywordTable).where(KeywordTable.tenant == tenant, KeywordTable.text == text)
        ).first()

    def add(self, tenant: str, kw: NewKeyword) -> tuple[KeywordRecord, bool]:
        """Insert, or return the existing keyword with the same text (``created`` False)."""
        return self.add_many(tenant, [kw])[0]

    @_guarded
    def add_many(self, tenant: str, items: Sequence[NewKeyword]) -> list[tuple[KeywordRecord, bool]]:
        """Insert several keywords in one transaction; existing texts are returned unchanged."""
        now = dt.datetime.now(dt.timezone.utc)
        for _attempt in range(3):
            try:
                with self._sessions.begin() as s:
                    out: list[tuple[KeywordTable, bool]] = []
                    fresh: dict[str, KeywordTable] = {}
                    for kw in items:
                        row = fresh.get(kw.text) or self._find(s, tenant, kw.text)
                        if row is not None:
                            out.append((row, False))
                            continue
                        row = KeywordTable(
                            tenant=tenant,
                            text=kw.text,
                            phonemes=" ".join(kw.phonemes),
                            threshold=kw.threshold,
                            meta=kw.metadata,
                            created_at=now,
                            updated_at=now,
                            proxy_mode=kw.proxy_mode,
                            proxy_vector=_vector_bytes(kw.proxy),
                            proxy_model=kw.proxy_model,
                        )
                        s.add(row)
                        fresh[kw.text] = row
                        out.append((row, True))
                    s.flush()
                    return [(_record(r), created) for r, created in out]
            except IntegrityError:  # another writer (replica) inserted the same text: retry finds it
                continue
        raise RuntimeError("could not insert keywords after 3 attempts (concurrent writers)")

    @staticmethod
    def _owned(s: Session, tenant: str, keyword_id: int) -> KeywordTable | None:
        # Tenant in the WHERE clause: another tenant's id costs the same as a missing one (no timing hint).
        return s.scalars(
            select(KeywordTable).where(KeywordTable.id == keyword_id, KeywordTable.tenant == tenant)
        ).one_or_none()

    @_guarded
    def get(self, tenant: str, keyword_id: int) -> KeywordRecord:
        with self._sessions() as s:
            row = self._owned(s, tenant, keyword_id)
            if row is None:
                raise KeywordNotFound(keyword_id)
            return _record(row)

    @_guarded
    def get_many(self, tenant: str, ids: Sequence[int]) -> list[KeywordRecord]:
        if not ids:
            return []
        with self._sessions() as s:
            rows = s.scalars(
                select(KeywordTable).where(KeywordTable.tenant == tenant, KeywordTable.id.in_(list(ids)))
            )
            return [_record(r) for r in rows]

    @_guarded
    def page(self, tenant: str, after: int | None = None, limit: int = 100) -> list[KeywordRecord]:
        """Keyset pagination by id: stable while others enroll or delete."""
        q = select(KeywordTable).where(KeywordTable.tenant == tenant)
        if after is not None:
            q = q.where(KeywordTable.id > after)
        with self._sessions() as s:
            return [_record(r) for r in s.scalars(q.order_by(KeywordTable.id).limit(limit))]

    @_guarded
    def all(self) -> list[KeywordRecord]:
        with self._sessions() as s:
            return [_record(r) for r in s.scalars(select(KeywordTable).order_by(KeywordTable.id))]

    @_guarded
    def thresholds(self) -> dict[str, dict[int, float]]:
        """``{tenant: {id: threshold}}`` of every row: what the index must hold (consistency check)."""
        out: dict[str, dict[int, float]] = {}
        with self._sessions() as s:
            for kid, tenant, thr in s.execute(
                select(KeywordTable.id, KeywordTable.tenant, KeywordTable.threshold)
            ):
                out.setdefault(tenant, {})[int(kid)] = float(thr)
        return out

    @_guarded
    def count(self, tenant: str | None = None) -> int:
        q = select(func.count()).select_from(KeywordTable)
        if tenant is not None:
            q = q.where(KeywordTable.tenant == tenant)
        with self._sessions() as s:
            return int(s.scalar(q) or 0)

    @_guarded
    def set_threshold(self, tenant: str, keyword_id: int, threshold: float) -> KeywordRecord:
        with self._sessions.begin() as s:
            row = self._owned(s, tenant, keyword_id)
            if row is None:
                raise KeywordNotFound(keyword_id)
            row.threshold = threshold
            row.updated_at = dt.datetime.now(dt.timezone.utc)
            s.flush()
            return _record(row)

    @_guarded
    def set_proxy(self, keyword_id: int, proxy: np.ndarray, proxy_model: str) -> None:
        """Replace a stored acoustic proxy (recomputed for another model); a deleted id is a no-op."""
        with self._sessions.begin() as s:
            s.execute(
                update(KeywordTable)
                .where(KeywordTable.id == keyword_id)
                .values(proxy_vector=_vector_bytes(proxy), proxy_model=proxy_model)
            )

    @_guarded
    def delete(self, tenant: str, keyword_id: int) -> KeywordRecord:
        with self._sessions.begin() as s:
            row = self._owned(s, tenant, keyword_id)
            if row is None:
                raise KeywordNotFound(keyword_id)
            rec = _record(row)
            s.delete(row)
            return rec

"""Durable keyword registry (SQLAlchemy 2): SQLite by default (WAL journal), PostgreSQL through
``OPENKWS_DATABASE_URL``.

The store keeps text, phonemes, threshold and metadata. Text proxies are not stored: they are
recomputed by the loaded model at start-up, so one registry serves any model version. Acoustic
proxies (``proxy_mode`` ``tts`` or ``both``) cost a TTS synthesis each, so their vector is stored
with the fingerprint of the model that computed it (``proxy_vector``, ``proxy_model``); a model
with another fingerprint recomputes it (:meth:`openkws.keywords.registry.KeywordRegistry.rebuild_index`).
Columns added after a database was created are added at start-up (:func:`add_missing_columns`). Every row has a ``tenant``
(derived from the caller's API key; ``"default"`` with auth off); ``(tenant, text)`` is unique,
which makes enrollment idempotent even across replicas. The same database holds the API keys
(:class:`ApiKeyTable`, hashed; see :mod:`openkws.server.auth`).

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
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.keywords import MAX_TENANT_CHARS
from openkws.keywords.availability import StoreHealth, StoreUnavailable, is_unavailable, short_error
from openkws.keywords.changelog import create_change_table, install_change_log

MAX_TEXT_CHARS = 256
DEFAULT_PROXY_MODE: ProxyMode = "text"  # rows written before proxy modes existed are text proxies


class Base(DeclarativeBase):
    pass


class KeywordTable(Base):
    __tablename__ = "keywords"
    # sqlite_autoincrement: ids are never reused after a delete (a stale id must not name a new keyword)
    __table_args__ = (
        UniqueConstraint("tenant", "text", name="uq_keywords_tenant_text"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS), index=True, default="default")
    text: Mapped[str] = mapped_column(String(MAX_TEXT_CHARS))
    phonemes: Mapped[str] = mapped_column(String(4 * MAX_TEXT_CHARS))  # space-separated, "|" between words
    threshold: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # Added later (add_missing_columns): how the proxy is made, and the stored acoustic proxy.
    proxy_mode: Mapped[str] = mapped_column(
        String(8), default=DEFAULT_PROXY_MODE, server_default=DEFAULT_PROXY_MODE
    )
    proxy_vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # float32 little-endian
    proxy_model: Mapped[str | None] = mapped_column(String(64), nullable=True)  # proxy_fingerprint_for


# Columns added to ``keywords`` after its first release, with the DDL suffix that keeps old rows valid.
ADDED_COLUMNS: dict[str, str] = {
    "proxy_mode": f"NOT NULL DEFAULT '{DEFAULT_PROXY_MODE}'",
    "proxy_vector": "",
    "proxy_model": "",
}


def add_missing_columns(conn: Connection) -> list[str]:
    """``ALTER TABLE keywords ADD COLUMN`` for each of :data:`ADDED_COLUMNS` an older database lacks
    (SQLite and PostgreSQL); returns the names added. Runs inside :func:`create_schema`'s transaction."""
    table, columns = KeywordTable.__tablename__, KeywordTable.__table__.c
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    added = []
    for name, suffix in ADDED_COLUMNS.items():
        if name not in have:
            ddl = f"ALTER TABLE {table} ADD COLUMN {name} {columns[name].type.compile(conn.dialect)} {suffix}"
            conn.execute(text(ddl.strip()))
            added.append(name)
    return added


# pg_advisory_xact_lock key that serialises schema creation across replicas ("okwsschm" in ASCII).
SCHEMA_LOCK_KEY = 0x6F6B7773_7363686D


def create_schema(engine: Engine) -> list[str]:
    """Create missing tables (and the change log on PostgreSQL) and add missing columns, in one
    transaction. On PostgreSQL the transaction first takes an advisory lock: replicas starting
    together on an empty database queue behind the first one and then find its tables (without it,
    two ``CREATE TABLE keywords`` raced and one replica died on ``UniqueViolation``). DDL is
    transactional in PostgreSQL, so a replica killed half-way leaves nothing half-created."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        Base.metadata.create_all(conn)
        added = add_missing_columns(conn)
        if postgres:
            create_change_table(conn)
        return added


class ApiKeyTable(Base):
    """API keys: only a hash of the secret token is stored (``openkws.server.auth``)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public, shown by `keys list`
    tenant: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


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


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")


def _sqlite_pragmas(synchronous: str) -> Any:
    def apply(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        # WAL + NORMAL: a committed (acknowledged) write survives a killed process; FULL also
        # survives power loss, at one fsync per commit.
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    return apply


def make_engine(url: str, sqlite_synchronous: str = "NORMAL") -> Engine:
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous {sqlite_synchronous!r}; use one of {SQLITE_SYNCHRONOUS}")
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        memory = u.database in (None, "", ":memory:")
        if not memory and u.database is not None:
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            poolclass=StaticPool if memory else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        return engine
    # connect_timeout bounds how long a request waits on an unreachable server before its 503
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


class KeywordNotFound(LookupError):
    pass


CONNECT_TIMEOUT_S = 5


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

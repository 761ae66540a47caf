"""The keyword database's schema and connection: the tables (keywords, API keys), the columns
added to older databases at start-up, and the engine with its SQLite durability pragmas.

Durability: with SQLite the journal is WAL. ``synchronous=NORMAL`` makes every committed
transaction survive a killed process (the WAL frames are written before COMMIT returns and the OS
keeps them; only a power loss or kernel crash can drop the last commits); ``FULL`` also fsyncs the
WAL at every commit, which survives power loss. :class:`openkws.keywords.store.KeywordStore` is the
repository on top.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

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
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from openkws.engine.acoustic_proxy import ProxyMode
from openkws.keywords import MAX_TENANT_CHARS
from openkws.keywords.changelog import create_change_table

MAX_TEXT_CHARS = 256
DEFAULT_PROXY_MODE: ProxyMode = "text"  # rows written before proxy modes existed are text proxies
CONNECT_TIMEOUT_S = 5


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

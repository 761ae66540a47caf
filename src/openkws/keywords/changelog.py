"""The registry's change log, writer side: every PostgreSQL :class:`~openkws.keywords.store.KeywordStore`
installs it (:func:`install_change_log`), and every flush that inserts, updates or deletes a keyword
or an API key appends one row per object to ``registry_changes`` in the same transaction, and sends
``NOTIFY openkws_registry`` (PostgreSQL delivers it at COMMIT, and only if the transaction commits).
The rows take a transaction-scoped advisory lock first, so sequence numbers are handed out in commit
order: a reader that has seen sequence ``n`` has seen every committed change below ``n`` (without
the lock a transaction holding sequence 10 could commit after one holding 11, and a follower at 11
would never read 10). :class:`ChangeLog` reads and prunes it; the reader side that applies it to
an index is :mod:`openkws.keywords.changefeed`.

The store imports this module, so it knows the store only by shape (:class:`LoggedStore`) and the
logged tables by name (:data:`LOGGED_TABLES`).
"""

from __future__ import annotations

import datetime as dt
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from openkws.keywords import MAX_TENANT_CHARS

CHANNEL = "openkws_registry"
# pg_advisory_xact_lock key that orders change-log writers ("okws" in ASCII).
LOCK_KEY = 0x6F6B7773
# Table name -> (change kind, the column that names the row): the store's keywords and API keys.
LOGGED_TABLES = {"keywords": ("keyword", "id"), "api_keys": ("api_key", "key_id")}
# The session factories already logging (weak: a collected store drops out).
_LOGGING: weakref.WeakSet[sessionmaker[Session]] = weakref.WeakSet()


class LoggedStore(Protocol):
    """What the change log needs of a store: its backend, engine and session factory."""

    @property
    def backend(self) -> str: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...


class _ChangeBase(DeclarativeBase):  # its own metadata: SQLite stores never get this table
    pass


class ChangeTable(_ChangeBase):
    __tablename__ = "registry_changes"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    kind: Mapped[str] = mapped_column(String(16))  # "keyword" | "api_key"
    op: Mapped[str] = mapped_column(String(8))  # "insert" | "update" | "delete"
    ref: Mapped[str] = mapped_column(String(32))  # keyword id or API key id
    # clock_timestamp(), not now(): now() is the transaction's start, and the lag metric wants the write
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


@dataclass(frozen=True)
class Change:
    seq: int
    tenant: str
    kind: str
    op: str
    ref: str
    at: dt.datetime


def _changes_of(session: Session) -> list[dict[str, str]]:
    """One change-log row per keyword or API key this flush writes (net changes only)."""
    rows: list[dict[str, str]] = []
    for op, objs in (("insert", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objs:
            if op == "update" and not session.is_modified(obj, include_collections=False):
                continue
            logged = LOGGED_TABLES.get(getattr(obj, "__tablename__", ""))
            if logged is not None:
                kind, ref = logged
                rows.append({"tenant": obj.tenant, "kind": kind, "op": op, "ref": str(getattr(obj, ref))})
    return rows


def _after_flush(session: Session, _ctx: Any) -> None:
    rows = _changes_of(session)
    if not rows:
        return
    conn = session.connection()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})  # held until COMMIT/ROLLBACK
    conn.execute(insert(ChangeTable), rows)
    conn.execute(text("SELECT pg_notify(:ch, '')"), {"ch": CHANNEL})  # sent at COMMIT, dropped on ROLLBACK


def create_change_table(conn: Connection) -> None:
    """Create ``registry_changes`` if absent; called inside the store's locked schema transaction
    (:func:`openkws.keywords.schema.create_schema`), so concurrent replicas do not race."""
    _ChangeBase.metadata.create_all(conn)


def install_change_log(store: LoggedStore) -> None:
    """Log every write made through ``store``'s sessions (its schema holds ``registry_changes``)."""
    if store.backend != "postgresql":
        raise ValueError(f"the change feed needs PostgreSQL (LISTEN/NOTIFY); this store is {store.backend}")
    if not inspect(store.engine).has_table(ChangeTable.__tablename__):
        with store.engine.begin() as conn:  # a store opened before the table existed (tests)
            create_change_table(conn)
    # Remembered here, not asked of event.contains: SQLAlchemy keys that registry by id() of the
    # sessionmaker's Session class and keeps the key after the class is collected, so a new class at a
    # reused address read as "already listening" and its writes went unlogged (a CI failure).
    if store.sessions not in _LOGGING:
        event.listen(store.sessions, "after_flush", _after_flush)
        _LOGGING.add(store.sessions)


class ChangeLog:
    """Reads (and prunes) ``registry_changes``. Synchronous: call from worker threads."""

    def __init__(self, store: LoggedStore) -> None:
        self.store = store

    def last_seq(self) -> int:
        with self.store.sessions() as s:
            return int(s.scalar(select(func.max(ChangeTable.seq))) or 0)

    def first_seq(self) -> int:
        with self.store.sessions() as s:
            return int(s.scalar(select(func.min(ChangeTable.seq))) or 0)

    def since(self, seq: int, limit: int = 5000) -> list[Change]:
        q = select(ChangeTable).where(ChangeTable.seq > seq).order_by(ChangeTable.seq).limit(limit)
        with self.store.sessions() as s:
            return [Change(r.seq, r.tenant, r.kind, r.op, r.ref, r.at) for r in s.scalars(q)]

    def prune(self, older_than_s: float) -> int:
        """Drop changes older than ``older_than_s`` (a follower that far behind rebuilds instead)."""
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than_s)
        with self.store.sessions.begin() as s:
            res = cast(CursorResult[Any], s.execute(delete(ChangeTable).where(ChangeTable.at < cutoff)))
            return int(res.rowcount or 0)

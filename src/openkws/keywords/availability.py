"""Database availability: which failures are an outage (:class:`StoreUnavailable`, answered 503
with ``Retry-After``), and the last outcome any store call saw (:class:`StoreHealth`, read by
``/readyz``). While the database is away the service keeps detecting from its in-memory index."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("openkws")


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (refused, lost or timed-out connection, or locked): nothing was
    written, or, for a write whose COMMIT was cut off, it may have been; enrollment is idempotent,
    so a retry is safe. The service answers 503 with ``Retry-After``."""


def is_unavailable(exc: BaseException) -> bool:
    """Connection-level failures (OperationalError / InterfaceError, or an invalidated connection);
    a constraint violation or a bad statement is a bug or a conflict, not an outage."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class StoreHealth:
    """The last database outcome any call saw (thread-safe): ``/readyz`` reads it, and pings
    only when it is older than it asks for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok = True
        self.error: str | None = None
        self.checked = 0.0  # time.monotonic() of the last outcome; 0: none yet
        self.down_since: float | None = None  # time.monotonic()

    def succeeded(self) -> None:
        with self._lock:
            if not self.ok and self.down_since is not None:
                log.warning("database reachable again after %.1f s", time.monotonic() - self.down_since)
            self.ok, self.error, self.down_since = True, None, None
            self.checked = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.ok:
                log.warning("database unavailable (%s); writes answer 503 until it is back", short_error(exc))
                self.down_since = time.monotonic()
            self.ok, self.error = False, short_error(exc)
            self.checked = time.monotonic()


def short_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(f"{type(orig).__name__}: {orig}".split())[:200]

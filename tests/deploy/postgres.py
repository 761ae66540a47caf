"""A throw-away PostgreSQL server on loopback for the change-feed and multi-replica tests.

Started with the Debian server binaries (``apt-get install postgresql``: the Makefile's
``APT_PACKAGES``) as the unprivileged ``postgres`` user when the tests run as root. Raises
:class:`PostgresUnavailable` (callers skip with its reason) when the binaries, ``runuser`` or the
``postgres`` extra (psycopg) are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresUnavailable(RuntimeError):
    pass


def pg_tool(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(max_connections: int = 100) -> Iterator[str]:
    """Yields ``postgresql://openkws@127.0.0.1:PORT/postgres`` (trust auth on loopback); stops and
    deletes the cluster afterwards."""
    try:
        import psycopg
    except ImportError as e:
        raise PostgresUnavailable(f"the `postgres` extra (psycopg) is not installed: {e}") from e
    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL unprivileged")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="openkws-pg-"))
    data = root / "data"
    if as_root:
        shutil.chown(root, "postgres")
    port = free_port()
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "openkws", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
            f"-c max_connections={max_connections}"
        )
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, KeyError, LookupError) as e:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"could not start a PostgreSQL server: {e}") from e
    url = f"postgresql://openkws@127.0.0.1:{port}/postgres"
    try:
        for _ in range(100):
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        yield url
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)

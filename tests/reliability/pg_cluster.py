"""A throw-away PostgreSQL cluster on loopback that a test can stop and start again (same port, same
data): the database-outage test takes it away under a running server. Started like
:mod:`tests.deploy.postgres` (Debian server binaries, as the ``postgres`` user when run as root);
raises :class:`~tests.deploy.postgres.PostgresUnavailable` when it cannot be started."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.deploy.postgres import PostgresUnavailable, free_port, pg_tool


class PgCluster:
    def __init__(self, root: Path, max_connections: int = 100) -> None:
        initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
        as_root = os.geteuid() == 0
        if as_root and shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL unprivileged")
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(root, "postgres")
        self.root, self.data, self.pg_ctl = root, root / "data", pg_ctl
        self.port = free_port()
        self.opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {root} -c fsync=off "
            f"-c max_connections={max_connections}"
        )
        self.url = f"postgresql://openkws@127.0.0.1:{self.port}/postgres"
        self._run(initdb, "-D", str(self.data), "-U", "openkws", "--auth=trust", "-E", "UTF8")

    def _run(self, *cmd: str) -> None:
        try:
            subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise PostgresUnavailable(f"{cmd[0]} failed: {e}") from e

    def start(self) -> None:
        import psycopg

        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", self.opts, "-l", str(self.root / "log"), "-w", "start"
        )
        for _ in range(100):
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise PostgresUnavailable("PostgreSQL started but does not accept connections")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client and shuts down cleanly (an operator's restart);
        ``immediate`` is a crash."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def pg_cluster(max_connections: int = 100) -> Iterator[PgCluster]:
    """A started cluster; stopped and deleted afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        raise PostgresUnavailable(f"the `postgres` extra (psycopg) is not installed: {e}") from e
    root = Path(tempfile.mkdtemp(prefix="openkws-pg-"))
    try:
        cluster = PgCluster(root, max_connections)
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(PostgresUnavailable):
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""The keyword registry on a real PostgreSQL server (started on loopback for this module).

Needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql``) and the ``postgres``
extra (psycopg); skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openkws.keywords.store import KeywordStore, NewKeyword
from openkws.server.app import create_app
from openkws.settings import Settings
from openkws.text import G2P

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_tool(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="the `postgres` extra (psycopg) is not installed")
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="openkws-pg-"))
    data = root / "data"
    if as_root:
        shutil.chown(root, "postgres")
    port = _free_port()
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "openkws", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, KeyError, LookupError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {e}")
    url = f"postgresql://openkws@127.0.0.1:{port}/postgres"
    for _ in range(50):
        try:
            KeywordStore(url).ping()
            break
        except Exception:
            time.sleep(0.1)
    try:
        yield url
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)


def _reset(url: str) -> None:
    from sqlalchemy import text

    store = KeywordStore(Settings(database_url=url).resolved_database_url())
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS keywords"))
    store.close()


def test_store_on_postgres(postgres_url: str) -> None:
    _reset(postgres_url)
    store = KeywordStore(Settings(database_url=postgres_url).resolved_database_url())
    assert store.backend == "postgresql"
    (a, created), (b, again) = store.add_many(
        "default",
        [
            NewKeyword("hey jarvis", ("HH", "EY"), 0.5, {"x": 1}),
            NewKeyword("hey jarvis", ("HH", "EY"), 0.9, None),
        ],
    )
    assert created and not again and a.id == b.id and a.metadata == {"x": 1}
    other, _ = store.add("tenant-b", NewKeyword("hey jarvis", ("HH",), 0.5, None))
    assert other.id != a.id and store.count("default") == 1 and store.count() == 2
    assert store.set_threshold("default", a.id, 0.7).threshold == pytest.approx(0.7)
    assert [r.id for r in store.page("default", None, 10)] == [a.id]
    assert a.created_at.tzinfo is not None
    store.delete("default", a.id)
    assert store.count("default") == 0
    store.close()


def test_app_on_postgres_survives_restart(
    postgres_url: str, make_settings: Callable[..., Settings], g2p: G2P
) -> None:
    _reset(postgres_url)
    settings = make_settings(database_url=postgres_url)
    with TestClient(create_app(settings, g2p=g2p)) as c:
        assert c.get("/readyz").json()["backend"]["database"] == "postgresql"
        r = c.post("/v1/keywords/batch", json={"keywords": [{"text": "hey jarvis"}, {"text": "play music"}]})
        assert r.status_code == 200
        ids = [k["id"] for k in r.json()["keywords"]]
        assert c.post("/v1/keywords", json={"text": "Hey Jarvis"}).status_code == 200
        assert c.delete(f"/v1/keywords/{ids[1]}").status_code == 204
    with TestClient(create_app(settings, g2p=g2p)) as c:
        assert [k["text"] for k in c.get("/v1/keywords").json()["items"]] == ["hey jarvis"]
        assert c.get("/readyz").json()["keywords"] == 1


def test_postgres_old_table_gains_proxy_columns(postgres_url: str) -> None:
    """A keywords table from before proxy modes is migrated at start-up; acoustic proxies round-trip (bytea)."""
    import numpy as np
    from sqlalchemy import text

    from openkws.keywords.schema import ADDED_COLUMNS

    _reset(postgres_url)
    url = Settings(database_url=postgres_url).resolved_database_url()
    store = KeywordStore(url)
    old, _ = store.add("default", NewKeyword("hey jarvis", ("HH", "EY"), 0.5, None))
    with store.engine.begin() as conn:
        for name in ADDED_COLUMNS:
            conn.execute(text(f"ALTER TABLE keywords DROP COLUMN {name}"))
    store.close()
    store = KeywordStore(url)
    (rec,) = store.all()
    assert (rec.id, rec.proxy_mode, rec.proxy, rec.proxy_model) == (old.id, "text", None, None)
    vec = np.linspace(-1, 1, 8, dtype=np.float32)
    new, _ = store.add("default", NewKeyword("okay computer", ("OW",), 0.5, None, "tts", vec, "fp"))
    got = store.get("default", new.id)
    assert got.proxy_mode == "tts" and got.proxy_model == "fp" and got.proxy is not None
    np.testing.assert_array_equal(got.proxy, vec)
    store.close()

"""N engine processes behind one port (``openkws serve --workers N``, ``OPENKWS_WORKERS``).

One process used at most about 1.2 of 2 cores (docs/BENCHMARKS.md, "What stops one process at
about 1.2 cores"): its streams fell into lockstep in one batch on one thread, and its event loop and
the Python around the ONNX calls share one GIL. Each worker is a whole service (model, index,
micro-batcher, admission control) in its own process, and every worker listens on the same address
with ``SO_REUSEPORT``: the kernel spreads new connections over the workers. A stream stays on the
worker that accepted it.

The workers share the keyword registry like replicas do: PostgreSQL through the change feed, SQLite
by re-reading the store when another connection committed (``PRAGMA data_version``, asked every
0.1 s) and every ``sync_interval_s`` (1 s unless set). On top of that, a keyword write made through
one worker is answered only once every live worker has applied it (at most ``worker_sync_timeout_s``;
:mod:`openkws.server.worker_sync`): a client that enrolls, then opens a stream that another worker
serves, sees its keyword. ``/metrics`` answers for every worker, whichever serves the scrape
(:mod:`openkws.server.metrics_shared`), and so does ``GET /v1/detections/counts``
(:mod:`openkws.server.detection_counts`). Limits and admission control are per worker (each response
names its worker, 0..N-1, in the ``X-OpenKWS-Worker`` header).

The parent only supervises: it checks that the port is free, creates the store's tables once,
makes the workers' shared board and metrics directory, starts the workers, marks a dead one on the
board (so that no write waits for it) and in the metrics (its gauges stop counting) and restarts it,
and on SIGTERM/SIGINT passes SIGTERM on, so that every worker drains its streams (summary, close
1001) before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from openkws.server.metrics_shared import SharedMetricsDir
from openkws.server.worker_sync import WorkerBoard
from openkws.settings import Settings

log = logging.getLogger("openkws")

WORKER_SYNC_S = 1.0  # SQLite: how often a worker re-reads the store when sync_interval_s is unset
LISTEN_BACKLOG = 2048  # uvicorn's default
RESTART_DELAY_S = 1.0
SUPERVISE_S = 0.2
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other workers may bind too (``SO_REUSEPORT``)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise ``OSError`` with a readable message when something already listens on ``host:port``
    (workers bind with SO_REUSEPORT, which would otherwise share a port with a stranger)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as e:
            raise OSError(
                e.errno, f"cannot listen on {host}:{port}: {e.strerror}; choose another --port"
            ) from e


def worker_settings(settings: Settings) -> Settings:
    """The settings every worker runs with: registry sync on, so enrollments reach every worker."""
    if settings.sync_interval_s > 0:
        return settings
    return settings.model_copy(update={"sync_interval_s": WORKER_SYNC_S})


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL), so no orphan keeps
    serving the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    settings_json: str, log_level: str, index: int, parent: int, board: WorkerBoard, metrics_dir: str
) -> None:
    """One worker process: the whole service on a shared SO_REUSEPORT socket."""
    # lazy: the app is built in each spawned worker, never in the supervisor; run imports this module
    from openkws.server.app import create_app
    from openkws.server.run import make_server

    _die_with_parent(parent)
    logging.basicConfig(
        level=log_level.upper(), format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s"
    )
    settings = Settings.model_validate_json(settings_json).model_copy(update={"worker_id": index})
    sock = listen_socket(settings.host, settings.port)
    app = create_app(settings, board=board, metrics_dir=metrics_dir)
    make_server(app, settings, log_level).run(sockets=[sock])


def _prepare_store(settings: Settings) -> None:
    """Create the store's tables once, before N workers race to do it."""
    from openkws.keywords.store import (
        KeywordStore,  # lazy: SQLAlchemy only when the supervisor creates tables
    )

    KeywordStore(settings.resolved_database_url(), settings.sqlite_synchronous).close()


def run_workers(settings: Settings, n: int, log_level: str = "info") -> int:
    """Run ``n`` worker processes until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    check_port_free(settings.host, settings.port)
    settings = worker_settings(settings)
    _prepare_store(settings)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or sessions
    payload = settings.model_dump_json()
    board = WorkerBoard(n, ctx)
    shared = SharedMetricsDir()  # before the first worker starts: each inherits it at spawn
    stopping = False

    def start(i: int) -> BaseProcess:
        p = ctx.Process(
            target=_worker_main,
            args=(payload, log_level, i, os.getpid(), board, str(shared.path)),
            name=f"openkws-worker-{i}",
        )
        p.start()
        return p

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("shutting down %d workers (signal %d)", n, signum)
        stopping = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                _terminate(p.pid)

    procs = [start(i) for i in range(n)]
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "openkws: %d workers on %s:%d (SO_REUSEPORT); registry sync every %.1f s; a keyword write "
        "waits up to %.1f s for every worker to apply it",
        n,
        settings.host,
        settings.port,
        settings.sync_interval_s,
        settings.worker_sync_timeout_s,
    )
    try:
        while not stopping:
            time.sleep(SUPERVISE_S)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping:
                    board.leave(i)  # writes stop waiting for it; its successor rejoins once in step
                    if p.pid is not None:
                        shared.worker_exited(p.pid)  # its gauges stop counting; its counters stay
                    log.error("worker %d (pid %s) exited with %s; restarting it", i, p.pid, p.exitcode)
                    time.sleep(RESTART_DELAY_S)
                    if not stopping:
                        procs[i] = start(i)
        deadline = time.monotonic() + settings.shutdown_timeout_s + 10.0
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("worker pid %s did not exit in time; killing it", p.pid)
                p.kill()
                p.join(5.0)
        # uvicorn re-raises the signal it drained on, so a cleanly drained worker may end by it
        clean = (0, -int(signal.SIGTERM), -int(signal.SIGINT))
        return 0 if all(p.exitcode in clean for p in procs) else 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        board.close()
        shared.close()


def _terminate(pid: int) -> None:
    """SIGTERM to one worker (it may have exited already)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

"""One ``/metrics`` for ``--workers N``: whichever worker a scrape reaches answers for all of them.

Each worker is a process with its own metric objects, so a scrape that the kernel handed to one worker
used to read that worker alone: counters jumped between the workers' values from one scrape to the
next, and the backlog and refusals were one worker's. Now the supervisor makes one directory per
server start and names it in ``PROMETHEUS_MULTIPROC_DIR`` before it spawns the workers, which
inherit it. prometheus_client then keeps each worker's values in memory-mapped files there (its
multiprocess mode, chosen when a process first imports the library), and the worker that serves
``/metrics`` merges every file (:class:`~prometheus_client.multiprocess.MultiProcessCollector`):

* counters and histograms add up over every worker of this server start, dead ones included (their
  files stay), so a counter never goes back while the server runs, not even when a worker restarts;
* each gauge says how workers combine (``multiprocess_mode`` in :mod:`openkws.server.metrics`); the
  ``live*`` modes leave out a worker that died: the supervisor calls :meth:`SharedMetricsDir.worker_exited`;
* gauges read at scrape time (the engine's backlog, the keyword count) and the process metrics
  (:class:`ProcessMirror`) are written to the files by every worker every ``SAMPLE_S``, and by the
  serving worker just before it answers.

The directory is new for every start, so the files of an earlier run never count: a private temporary
directory removed at exit, or, when the operator set ``PROMETHEUS_MULTIPROC_DIR``, that directory with
the metric files of any earlier run deleted at start (one server per directory). The workers'
detection counts (``GET /v1/detections/counts``) are shared through the same directory
(:mod:`openkws.server.detection_counts`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_S = 0.5  # how stale another worker's backlog, memory or detection counts may be in an answer
# The workers' detection count snapshots, in the same directory (openkws.server.detection_counts)
COUNTS_PREFIX = "detections-"
RUN_FILES = ("*.db", f"{COUNTS_PREFIX}*")  # what a run leaves: metric files and count snapshots
# How the workers' process metrics combine. The CPU counter is a sum that keeps dead workers' time.
Mode = Literal["livesum", "livemax", "min"]
PROCESS_GAUGES: dict[str, tuple[str, Mode]] = {
    "process_virtual_memory_bytes": ("Virtual memory size in bytes (sum over the workers)", "livesum"),
    "process_resident_memory_bytes": ("Resident memory size in bytes (sum over the workers)", "livesum"),
    "process_open_fds": ("Number of open file descriptors (sum over the workers)", "livesum"),
    "process_max_fds": ("Maximum number of open file descriptors (per worker)", "livemax"),
    # min over every worker of this start, dead ones too: the server's start
    "process_start_time_seconds": ("Start time of the first worker since unix epoch in seconds", "min"),
}


def prepare(path: Path) -> Path:
    """Make ``path`` an empty metrics directory: create it, or delete the metric files (``*.db``) and
    detection count snapshots an earlier run left there. Raises ``ValueError`` when ``path`` exists
    and is not a directory."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{ENV}={path} is not a directory; set it to a directory (or unset it)")
    path.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_FILES:
        for stale in path.glob(pattern):
            stale.unlink(missing_ok=True)
    return path


class SharedMetricsDir:
    """The supervisor's side: the directory of this server start, named in ``PROMETHEUS_MULTIPROC_DIR``
    for the workers it spawns from now on (restored by :meth:`close`)."""

    def __init__(self) -> None:
        self._previous = os.environ.get(ENV)
        self.owned = not self._previous
        if self._previous:
            self.path = prepare(Path(self._previous))
        else:
            self.path = Path(tempfile.mkdtemp(prefix="openkws-metrics-"))  # mode 0700: ours alone
        os.environ[ENV] = str(self.path)  # read by each spawned worker's first import of prometheus_client

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's ``live*`` gauges (its counters stay in the sums)."""
        with contextlib.suppress(OSError):
            mark_process_dead(pid, str(self.path))

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = str(self._previous)


def shared_registry(path: str) -> CollectorRegistry:
    """A registry whose collection merges every worker's files in ``path``. Refuses when this process
    keeps its metrics in memory: its values would never reach the files, and the scrape would miss them."""
    if not getattr(values.ValueClass, "_multiprocess", False) or os.environ.get(ENV) != path:
        raise RuntimeError(
            f"shared metrics need {ENV}={path} in the environment before prometheus_client is first "
            "imported (the --workers supervisor sets it for the workers it spawns)"
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)
    return registry


class ProcessMirror:
    """This worker's process metrics (prometheus_client's :class:`ProcessCollector`, which reads
    ``/proc``) written to the shared files under the same names, so a scrape reads the workers' total.
    ``process_cpu_seconds_total`` becomes a counter incremented by this worker's CPU time since the
    last sample: a restarted worker's time is kept and the sum never goes back."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._source = ProcessCollector(registry=None)
        self._gauges = {
            name: Gauge(name, doc, multiprocess_mode=mode, registry=registry)
            for name, (doc, mode) in PROCESS_GAUGES.items()
        }
        self._cpu = Counter(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds (sum over the workers since the server started)",
            registry=registry,
        )
        self._cpu_seen = 0.0
        self._lock = threading.Lock()  # a scrape's thread and the sampling task: count no CPU twice

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        for family in self._source.collect():
            for s in family.samples:
                if s.name == "process_cpu_seconds_total":
                    if s.value > self._cpu_seen:
                        self._cpu.inc(s.value - self._cpu_seen)
                        self._cpu_seen = s.value
                elif s.name in self._gauges:
                    self._gauges[s.name].set(s.value)

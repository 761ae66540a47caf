"""Detections per keyword and tenant, served by ``GET /v1/detections/counts``: with ``--workers N``
the whole server's, whichever worker the request reaches.

Each process counts its own detections (:class:`DetectionCounts`). With several workers, each one
also keeps a snapshot of its counts in the server start's shared directory
(:mod:`openkws.server.metrics_shared`), ``detections-<pid>-<token>.json``: at start, then every
``SAMPLE_S`` when they changed (in a thread, never on the event loop), and once more at shutdown;
written to a temporary file and renamed, so a reader sees a whole snapshot. The worker that answers
adds its own live counts to every other worker's latest snapshot (:class:`SharedCounts`):

* a dead worker's last snapshot stays and keeps counting, like its Prometheus counters; its
  successor writes another file and starts from zero, so nothing counts twice. A worker killed
  without a shutdown loses at most its last ``SAMPLE_S`` of detections;
* deleted keywords drop out: live workers forget them (the registry's ``on_removed``), and the
  answer keeps only keywords that the index holds, which drops them from dead workers' snapshots too
  (keyword ids are never reused);
* a file that does not parse is skipped with a warning (once per version of the file).

A single process (no shared directory) answers from its own counts and touches no file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from openkws.server.metrics_shared import COUNTS_PREFIX, SAMPLE_S

log = logging.getLogger("openkws")

FORMAT = 1  # the snapshot file's layout; a file of another format is skipped


@dataclass(frozen=True)
class Snapshot:
    """One process's counts: ``tenants[tenant][keyword_id] = detections`` since ``since`` (unix s)."""

    since: float
    tenants: Mapping[str, Mapping[int, int]]


def encode(s: Snapshot) -> bytes:
    tenants = {t: {str(i): n for i, n in c.items()} for t, c in s.tenants.items()}
    return json.dumps({"format": FORMAT, "since": s.since, "tenants": tenants}).encode()


def decode(data: bytes) -> Snapshot:
    """Parse a snapshot file; ``ValueError`` saying what is wrong when it is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} snapshot")
    since, raw = doc.get("since"), doc.get("tenants")
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        raise ValueError(f"since is {since!r}, not a time")
    if not isinstance(raw, dict):
        raise ValueError("tenants is not an object")
    tenants: dict[str, dict[int, int]] = {}
    for tenant, counts in raw.items():
        if not isinstance(counts, dict):
            raise ValueError(f"tenant {tenant!r}: counts are not an object")
        out = tenants[tenant] = {}
        for key, n in counts.items():
            if (
                not (key.isascii() and key.isdigit())
                or isinstance(n, bool)
                or not isinstance(n, int)
                or n < 0
            ):
                raise ValueError(f"tenant {tenant!r}: {key!r}: {n!r} is not keyword id: count")
            out[int(key)] = n
    return Snapshot(float(since), tenants)


def merge(tenant: str, snapshots: Iterable[Snapshot]) -> tuple[float, Tally[int]]:
    """``tenant``'s counts summed over ``snapshots`` (one per process), and the earliest ``since``:
    the counts cover the time since the first of them started."""
    since = math.inf
    total: Tally[int] = Tally()
    for s in snapshots:
        since = min(since, s.since)
        total.update(s.tenants.get(tenant, {}))
    return since, total


def ranked(counts: Mapping[int, int], enrolled: Mapping[int, str], k: int) -> list[tuple[int, int]]:
    """The ``k`` most detected of the ``enrolled`` keywords: ``(keyword_id, count)``, most first.
    Deleted keywords are left out before the cut, so they never take a place."""
    kept = [(i, n) for i, n in counts.items() if i in enrolled and n > 0]
    return sorted(kept, key=lambda kv: (-kv[1], kv[0]))[:k]


class DetectionCounts:
    """Detections per keyword since this process started, per tenant (thread-safe). Bounded by the
    enrolled keywords: :meth:`forget` drops deleted ones (the registry calls it)."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, Tally[int]] = {}
        self._lock = threading.Lock()
        self.since = time.time()
        self.version = 0  # changes with every add or forget: a snapshot older than it is stale

    def add(self, tenant: str, keyword_ids: Iterable[int]) -> None:
        with self._lock:
            self._by_tenant.setdefault(tenant, Tally()).update(keyword_ids)
            self.version += 1

    def forget(self, tenant: str, keyword_ids: Iterable[int]) -> None:
        with self._lock:
            counts = self._by_tenant.get(tenant)
            if counts is None:
                return
            for i in keyword_ids:
                counts.pop(i, None)
            if not counts:
                del self._by_tenant[tenant]
            self.version += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.since, {t: dict(c) for t, c in self._by_tenant.items()})

    def tenant(self, tenant: str) -> tuple[float, Tally[int]]:
        """``(since, counts)`` of ``tenant`` in this process."""
        with self._lock:
            return self.since, Tally(self._by_tenant.get(tenant, {}))


class SharedCounts:
    """``--workers``: this worker's side of the shared directory. :meth:`write` keeps this worker's
    snapshot there; :meth:`tenant` answers for every worker of this server start, dead ones included."""

    def __init__(self, counts: DetectionCounts, directory: Path, pid: int | None = None) -> None:
        self.counts = counts
        self.directory = directory
        # pid for a reader, a token so that a reused pid never overwrites a dead worker's counts
        name = f"{COUNTS_PREFIX}{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}"
        self.path = directory / f"{name}.json"
        self._tmp = directory / f"{name}.tmp"  # not *.json: never read half-written
        self._written = -1  # the counts' version in the file (-1: no file yet)
        self._lock = threading.Lock()  # a cancelled writer's thread may still run at the final write
        self._skipped: set[tuple[str, int]] = set()  # bad files already warned of: (name, mtime)

    def write(self) -> bool:
        """Write this worker's snapshot when the counts changed since the last write; True if it did."""
        with self._lock:
            version = self.counts.version
            if version == self._written:
                return False
            self._tmp.write_bytes(encode(self.counts.snapshot()))
            os.replace(self._tmp, self.path)
            self._written = version
            return True

    async def write_every(self, period_s: float = SAMPLE_S) -> None:
        """Until cancelled: write at once (this worker's start counts), then every ``period_s`` when
        the counts changed."""
        while True:
            try:
                await asyncio.to_thread(self.write)
            except OSError:  # a full disk must not end the writing for good
                log.exception("writing the detection counts to %s failed", self.path)
            await asyncio.sleep(period_s)

    def others(self) -> list[Snapshot]:
        """Every other worker's latest snapshot, dead ones included; unreadable files are skipped."""
        out = []
        for path in sorted(self.directory.glob(f"{COUNTS_PREFIX}*.json")):
            if path == self.path:
                continue  # this worker's live counts are fresher
            mtime = -1
            try:
                mtime = path.stat().st_mtime_ns
                out.append(decode(path.read_bytes()))
            except FileNotFoundError:
                continue  # the directory is being removed (shutdown)
            except (OSError, ValueError) as e:
                if (path.name, mtime) not in self._skipped:
                    self._skipped.add((path.name, mtime))
                    log.warning("detection counts: skipping %s, which another worker wrote: %s", path, e)
        return out

    def tenant(self, tenant: str) -> tuple[float, Tally[int]]:
        """``(since, counts)`` of ``tenant`` over every worker: this one's live counts and the others'
        snapshots (at most ``SAMPLE_S`` old for the live workers)."""
        since, live = self.counts.tenant(tenant)
        return merge(tenant, [Snapshot(since, {tenant: live}), *self.others()])

    def close(self) -> None:
        """Write the final counts (shutdown: the drained streams' detections included)."""
        try:
            self.write()
        except OSError as e:
            log.warning("detection counts: the final write to %s failed: %s", self.path, e)

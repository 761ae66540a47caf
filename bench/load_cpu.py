"""Where the CPU goes during a load level (:mod:`bench.load`): CPU of the server's process tree and
of each of its threads, the whole machine's busy time, and py-spy profiles of the server sorted
into categories (active threads against threads holding the GIL)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def tree_cpu_s(pid: int) -> float:
    """User + system CPU of a process and its children (the worker processes)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread of the server and its workers (``<pid>/main`` runs the event loop;
    a single process's two busiest other threads are normally its inference workers)."""
    import psutil

    out: dict[str, float] = {}
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            for t in p.threads():
                name = f"{p.pid}/main" if t.id == p.pid else f"{p.pid}/{t.id}"
                out[name] = t.user_time + t.system_time
        except psutil.NoSuchProcess:
            pass
    return out


def busiest_threads(before: dict[str, float], after: dict[str, float], wall: float, k: int = 6) -> list[str]:
    cores = {n: (v - before.get(n, 0.0)) / wall for n, v in after.items()}
    top = sorted(cores.items(), key=lambda kv: -kv[1])[:k]
    return [f"{n} {c:.2f}" for n, c in top if c >= 0.01]


def machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


# The first rule a sampled stack matches names its category. onnxruntime releases the GIL inside
# InferenceSession.run; everything else in the process runs Python (or numpy) under the GIL.
CATEGORIES = (
    ("onnxruntime (GIL released)", ("onnxruntime",)),
    ("resampling and input queue", ("soxr", "stream_input.py")),
    ("decision layer (per frame, per keyword)", ("decision.py", "_decide_frame", "decide (", "_emit")),
    ("scoring and index", ("scoring.py", "index.py", "prefilter.py", "faiss")),
    ("engine step: windows, pooling prep, numpy glue", ("openkws/engine",)),
    ("micro-batcher and sessions", ("batcher.py", "sessions.py", "concurrent/futures")),
    (
        "websocket, JSON, handlers (event loop)",
        ("websockets", "uvicorn", "starlette", "stream_handler", "json"),
    ),
    ("asyncio event loop", ("asyncio",)),
)


def categorize(stack: str) -> str:
    for name, keys in CATEGORIES:
        if any(k in stack for k in keys):
            return name
    return "other"


def read_collapsed(path: Path) -> dict[str, int]:
    """py-spy ``--format raw`` (collapsed stacks: ``frames count`` per line) -> samples per category."""
    out: dict[str, int] = {}
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            c = categorize(stack)
            out[c] = out.get(c, 0) + int(n)
    return out


def start_py_spy(pid: int, seconds: float, out: Path) -> list[Any]:
    """Two py-spy samplers over the server: every active thread, and only threads holding the GIL."""
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, extra in (("active", []), ("gil", ["--gil"])):
        cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--nonblocking",
               "--subprocesses", "--duration", str(int(seconds)), "--output", str(out / f"{name}.txt"), *extra]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def profile_table(out: Path) -> dict[str, Any]:
    """Samples per category: active threads vs GIL holders (50 samples per second per thread)."""
    active, gil = read_collapsed(out / "active.txt"), read_collapsed(out / "gil.txt")
    total_a, total_g = sum(active.values()), sum(gil.values())
    rows = [
        {"category": c, "active_samples": active.get(c, 0), "gil_samples": gil.get(c, 0)}
        for c in [n for n, _ in CATEGORIES] + ["other"]
        if active.get(c, 0) or gil.get(c, 0)
    ]
    return {"active_samples": total_a, "gil_samples": total_g, "rows": rows}


def profile_markdown(row: dict[str, Any]) -> str:
    p = row["profile"]
    a, g = max(1, p["active_samples"]), max(1, p["gil_samples"])
    lines = [
        f"{row['streams']} streams: {p['active_samples']} samples of active threads, {p['gil_samples']} "
        "holding the GIL (py-spy, 50 Hz)\n",
        "| where | share of active samples | share of GIL-holding samples |",
        "| --- | --- | --- |",
    ]
    for r in p["rows"]:
        lines.append(
            f"| {r['category']} | {100 * r['active_samples'] / a:.1f}% | {100 * r['gil_samples'] / g:.1f}% |"
        )
    return "\n".join(lines) + "\n"

"""Issue 24: one ``/metrics`` for ``--workers N`` (:mod:`openkws.server.metrics_shared`).

Real processes write real metric files; no model is loaded here (tests/service/test_workers_metrics.py
scrapes a real two-worker server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from openkws.server.metrics import REFUSALS, Metrics
from openkws.server.metrics_shared import ENV, SharedMetricsDir, prepare

HEALTHZ = ("openkws_http_requests_total", ("method", "route", "status"), ("GET", "/healthz", "200"))


def _stale_counter(directory: Path, pid: int, value: float) -> Path:
    """The file a worker of an earlier run leaves: its healthz request counter at ``value``."""
    name, labelnames, labelvalues = HEALTHZ
    path = directory / f"counter_{pid}.db"
    d = MmapedDict(str(path))
    d.write_value(
        mmap_key(name[: -len("_total")], name, labelnames, labelvalues, "HTTP requests"), value, 0.0
    )
    d.close()
    return path


def _healthz_total(directory: Path) -> float:
    return sum(
        s.value
        for fam in MultiProcessCollector(None, str(directory)).collect()
        for s in fam.samples
        if s.name == HEALTHZ[0] and s.labels.get("route") == "/healthz"
    )


def test_prepare_wipes_the_files_of_an_earlier_run(tmp_path: Path) -> None:
    d = tmp_path / "metrics"
    d.mkdir()
    _stale_counter(d, 424242, 1000.0)
    (d / "README").write_text("not a metric file")
    assert _healthz_total(d) == 1000.0  # left there, a dead run's requests would count
    assert prepare(d) == d
    assert _healthz_total(d) == 0.0 and not list(d.glob("*.db"))
    assert (d / "README").exists()  # only metric files are removed
    assert prepare(tmp_path / "new" / "dir").is_dir()  # created when missing


def test_prepare_refuses_a_file(tmp_path: Path) -> None:
    f = tmp_path / "metrics"
    f.write_text("x")
    with pytest.raises(ValueError, match=f"{ENV}=.*metrics is not a directory; set it to a directory"):
        prepare(f)


def test_shared_dir_is_fresh_per_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    a = SharedMetricsDir()  # none given: a private temporary directory, removed at close
    assert a.owned and a.path.is_dir() and not list(a.path.iterdir())
    assert os.environ[ENV] == str(a.path) and (a.path.stat().st_mode & 0o777) == 0o700
    _stale_counter(a.path, 1, 5.0)
    a.close()
    assert not a.path.exists() and ENV not in os.environ

    given = tmp_path / "operator"
    given.mkdir()
    _stale_counter(given, 424242, 7.0)
    monkeypatch.setenv(ENV, str(given))
    b = SharedMetricsDir()  # the operator's directory: emptied of stale files, kept at close
    assert not b.owned and b.path == given and _healthz_total(given) == 0.0
    b.close()
    assert given.is_dir() and os.environ[ENV] == str(given)


def test_a_process_without_the_environment_refuses_shared_metrics(tmp_path: Path) -> None:
    """This test process imported prometheus_client without ``PROMETHEUS_MULTIPROC_DIR``: its values
    would never reach the files, so a shared ``Metrics`` refuses rather than serve one process's."""
    with pytest.raises(RuntimeError, match=f"shared metrics need {ENV}="):
        Metrics(shared_dir=str(tmp_path))


# One worker: its metrics in the shared directory, as a --workers worker sets them; then, if asked,
# the /metrics body it would answer (after its own sample, as render() does).
WORKER = """
import sys
from openkws.server.metrics import Metrics
refusals, streams, render = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "render"
m = Metrics(shared_dir=sys.argv[1])
m.refusals.labels("stream", "backlog").inc(refusals)
m.http_requests.labels("GET", "/healthz", "200").inc(refusals)
m.batch_latency.observe(0.003)
m.active_streams.set(streams)
m.watch(m.keywords, lambda: 5)
m.watch(m.engine_backlog, lambda: 0.1 * streams)
m.set_model({"model_version": "v", "frontend": "f", "embedding_dim": "8", "onnx_backend": "cpu",
             "index_backend": "cpu", "database": "sqlite"})
m.sample()
sys.stdout.write(m.render().decode() if render else "")
"""


def _worker(directory: Path, refusals: int, streams: int, render: bool) -> tuple[int, dict[str, float]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            str(directory),
            str(refusals),
            str(streams),
            "render" if render else "-",
        ],
        env={**os.environ, ENV: str(directory)},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    samples: dict[str, float] = {}
    for fam in text_string_to_metric_families(out):
        for s in fam.samples:
            assert "pid" not in s.labels, s  # every gauge names how workers combine
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return proc.pid, samples


def test_workers_metrics_combine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counters and histograms add up, dead workers' included; live gauges drop a dead worker once the
    supervisor marks it; the keyword count is every worker's, not N times it."""
    monkeypatch.delenv(ENV, raising=False)
    shared = SharedMetricsDir()  # as the supervisor makes it
    d = shared.path
    first, _ = _worker(d, refusals=3, streams=2, render=False)
    _, m = _worker(d, refusals=4, streams=5, render=True)
    assert m["openkws_admission_refusals_total{reason=backlog,source=stream}"] == 7
    assert m["openkws_http_requests_total{method=GET,route=/healthz,status=200}"] == 7
    for source, reason in REFUSALS:  # exported at 0, once, whichever worker answers
        assert f"openkws_admission_refusals_total{{reason={reason},source={source}}}" in m
    assert m["openkws_inference_batch_seconds_count{}"] == 2
    assert m["openkws_inference_batch_seconds_bucket{le=0.005}"] == 2
    assert m["openkws_active_streams{}"] == 7  # livesum
    assert m["openkws_enrolled_keywords{}"] == 5  # livemax: each worker holds the whole index
    assert m["openkws_engine_backlog_seconds{}"] == pytest.approx(0.5)  # the worst worker
    assert m["openkws_workers{}"] == 2
    assert sum(v for k, v in m.items() if k.startswith("openkws_model_info{")) == 1
    assert m["process_cpu_seconds_total{}"] > 0 and m["process_resident_memory_bytes{}"] > 0

    shared.worker_exited(first)
    _, m = _worker(d, refusals=0, streams=0, render=True)
    assert m["openkws_admission_refusals_total{reason=backlog,source=stream}"] == 7  # never goes back
    assert m["openkws_inference_batch_seconds_count{}"] == 3
    assert m["openkws_active_streams{}"] == 5  # the dead worker's 2 streams are gone
    assert m["openkws_workers{}"] == 2  # the second worker (never marked dead) and this one
    shared.close()

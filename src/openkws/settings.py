"""Service settings: one typed object, read from ``OPENKWS_*`` environment variables and passed
explicitly to :func:`openkws.server.app.create_app`. Nothing reads the environment later.

Example:
    >>> s = Settings(data_dir=Path("/tmp/okws"), max_streams=8)
    >>> s.resolved_database_url()
    'sqlite:////tmp/okws/keywords.db'
    >>> Settings(database_url="postgresql://u:p@db/okws").resolved_database_url()
    'postgresql+psycopg://u:p@db/okws'
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openkws.engine.spotter import DetectorConfig
from openkws.keywords.confusables import ConfusionPolicy

# Decision and confusable defaults are defined once, by the engine and registry dataclasses.
_DECISION = DetectorConfig()
_CONFUSION = ConfusionPolicy()


def packaged_model_dir() -> Path:
    """The default model shipped inside the package (``openkws.models``/default), wherever it is installed."""
    return Path(str(files("openkws.models") / "default"))


def user_data_dir() -> Path:
    """Per-user data directory ($XDG_DATA_HOME/openkws, else ~/.local/share/openkws): the keyword
    database must not depend on the directory the server happens to start in."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openkws"


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: affinity, capped by the cgroup v2 quota (``cpu.max``: ``quota period``
    or ``max period``), rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 limit to read
        pass
    return max(1, cores)


def _cuda_offered() -> bool:
    """Whether onnxruntime offers CUDA here (what ``device`` ``auto`` picks, and ``cuda`` needs)."""
    from openkws.engine.runtime import choose_providers  # lazy: loads onnxruntime

    return choose_providers("auto").backend == "cuda"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENKWS_", extra="ignore", frozen=True)

    # Model and storage
    model_dir: Path = Field(default_factory=packaged_model_dir)
    data_dir: Path = Field(default_factory=user_data_dir)
    database_url: Annotated[
        str | None, Field(description="SQLAlchemy URL; default: SQLite file in data_dir")
    ] = None
    sqlite_synchronous: Annotated[
        Literal["NORMAL", "FULL"],
        Field(
            description="NORMAL: enrollments survive a killed server; FULL: also power loss (one fsync each)"
        ),
    ] = "NORMAL"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    verify_model_hashes: bool = True

    # Network and security
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    auth: Annotated[
        bool,
        Field(
            description="require API keys (OPENKWS_AUTH=on); off: every caller is the "
            "'default' tenant with admin rights (local use)"
        ),
    ] = False
    shutdown_timeout_s: Annotated[
        float,
        Field(gt=0, description="SIGTERM: time for streams to get their summary and for requests to finish"),
    ] = 15.0

    sync_interval_s: Annotated[
        float, Field(ge=0.0, description="re-read the store every N s (replicas); 0 = never")
    ] = 0.0
    api_key_cache_s: Annotated[
        float,
        Field(
            ge=0.0,
            description="while the database is away, API keys verified in the last N s are still "
            "accepted (the database decides whenever it answers); 0 = no cache",
        ),
    ] = 60.0
    db_retry_after_s: Annotated[
        int, Field(ge=1, description="Retry-After of the 503 a write gets while the database is away")
    ] = 5

    # Limits
    max_streams: Annotated[int, Field(ge=1, description="concurrent websocket streams")] = 128
    max_frame_bytes: Annotated[int, Field(ge=1024, description="largest websocket message")] = 1 << 20
    max_upload_bytes: Annotated[int, Field(ge=1024, description="largest POST /v1/detect upload")] = 64 << 20
    max_upload_seconds: Annotated[float, Field(gt=0)] = 600.0
    max_body_bytes: Annotated[int, Field(ge=1024, description="largest request body other than uploads")] = (
        4 << 20
    )
    max_stream_seconds: Annotated[
        float, Field(gt=0, description="audio per websocket stream, and its wall-clock duration")
    ] = 3600.0
    max_pending_seconds: Annotated[
        float, Field(gt=0, description="unprocessed audio per stream before reads pause")
    ] = 30.0
    max_pending_bytes: Annotated[
        int, Field(ge=1024, description="unprocessed input bytes per stream before reads pause")
    ] = 8 << 20
    ws_ping_interval_s: Annotated[float, Field(gt=0, description="websocket keepalive ping interval")] = 20.0
    ws_ping_timeout_s: Annotated[
        float,
        Field(
            gt=0,
            description="close a connection whose pong is this late while "
            "the server reads (not while it pauses reads)",
        ),
    ] = 20.0
    ws_control_budget_bytes: Annotated[
        int,
        Field(
            ge=1024,
            description="websocket control frames (ping, pong, close) a client may send at once, in bytes "
            "(payload + 6 header bytes each); over it: close 1008",
        ),
    ] = 64 << 10
    ws_control_refill_bytes_per_s: Annotated[
        float, Field(gt=0, description="rate at which the control-frame budget refills")
    ] = 1024.0
    send_timeout_s: Annotated[
        float, Field(gt=0, description="close a stream whose client does not read for this long")
    ] = 30.0
    idle_timeout_s: Annotated[
        float, Field(gt=0, description="close a stream after this long without a message")
    ] = 30.0
    max_streams_per_key: Annotated[
        int, Field(ge=1, description="concurrent streams per API key (auth on)")
    ] = 32
    max_keywords_per_tenant: Annotated[int, Field(ge=1, description="enrolled keywords per tenant")] = 10_000
    enroll_rate_per_s: Annotated[
        float, Field(gt=0, description="enrollment requests per second per API key (token bucket; auth on)")
    ] = 10.0
    enroll_burst: Annotated[int, Field(ge=1, description="enrollment requests a key may make at once")] = 50
    max_batch_keywords: Annotated[int, Field(ge=1, description="keywords per batch enrollment request")] = (
        1000
    )
    max_metadata_bytes: Annotated[int, Field(ge=2, description="keyword metadata, as UTF-8 JSON")] = 4096
    metrics_auth: Annotated[
        bool,
        Field(
            description="GET /metrics needs an API key with scope 'admin'; needs auth on (the server "
            "refuses to start otherwise); off: anyone who reaches the port reads it"
        ),
    ] = False

    # Detection
    default_threshold: Annotated[
        float | None, Field(ge=0.0, le=1.0, description="None: the model's default")
    ] = None
    hold_ms: Annotated[int, Field(ge=0)] = _DECISION.hold_ms
    refractory_ms: Annotated[int, Field(ge=0)] = _DECISION.refractory_ms
    decision: Annotated[
        Literal["hold", "peak"],
        Field(
            description="hold: emit a candidate's best window after hold_ms; peak: emit as soon as "
            "the score stops rising, at most peak_max_ms after it crossed the threshold"
        ),
    ] = _DECISION.decision
    peak_max_ms: Annotated[int, Field(ge=0, description="peak decision: longest wait after the crossing")] = (
        _DECISION.peak_max_ms
    )
    persistence: Annotated[
        int, Field(ge=1, description="consecutive over-threshold frames (80 ms each) before an event")
    ] = _DECISION.persistence
    cohort: Annotated[
        Literal["on", "off"],
        Field(
            description="cohort normalisation: score (s - cohort mean) / cohort std against random "
            "phrases of the keyword's phone count (thresholds and sensitivities then use that scale)"
        ),
    ] = "on" if _DECISION.cohort else "off"
    top_k: Annotated[int, Field(ge=1)] = _DECISION.top_k
    near_miss_margin: Annotated[float, Field(ge=0.0, le=2.0)] = _DECISION.near_miss_margin
    near_miss_interval_ms: Annotated[int, Field(ge=10)] = _DECISION.near_miss_interval_ms
    vad: Annotated[
        Literal["on", "off"],
        Field(
            description="default voice-activity gating of websocket streams (a stream's start message "
            "may override it); each onset's pre-roll is decoded as catch-up work (live_step_ms)"
        ),
    ] = "on"
    vad_aggressiveness: Annotated[
        int, Field(ge=0, le=3, description="webrtcvad mode: 0 keeps most audio, 3 the least")
    ] = 3

    # Acoustic keyword proxies (enrollment with proxy "tts" or "both")
    espeak_binary: Annotated[
        str,
        Field(
            min_length=1,
            description="espeak-ng executable (name on PATH or path) that synthesizes TTS proxies",
        ),
    ] = "espeak-ng"
    flite_binary: Annotated[
        str,
        Field(
            min_length=1, description="flite executable (name on PATH or path) that synthesizes TTS proxies"
        ),
    ] = "flite"

    enroll_hit_rate: Annotated[
        bool,
        Field(
            description=(
                "estimate each new keyword's expected_hit_rate at enrollment: its TTS renditions (those of proxy "
                "'tts', synthesized for text proxies too) with speed and noise variants, scored through the engine "
                "(about 1 s of CPU per keyword)"
            )
        ),
    ] = True

    # Confusable keywords reported at enrollment
    confusable_min_cosine: Annotated[float, Field(ge=-1.0, le=1.01)] = _CONFUSION.min_cosine
    confusable_max_phoneme_distance: Annotated[float, Field(ge=0.0, le=1.0)] = _CONFUSION.max_phoneme_distance
    confusable_top_k: Annotated[int, Field(ge=1)] = _CONFUSION.top_k

    # Batching and threads
    max_batch: Annotated[int, Field(ge=1, description="streams per inference batch")] = 64
    max_wait_ms: Annotated[
        float, Field(ge=0.0, description="wait for stragglers once a batch has started")
    ] = 2.0
    live_step_ms: Annotated[
        int,
        Field(
            ge=20,
            le=10_000,
            description="most audio (ms, past the VAD gate) one stream decodes per inference batch; "
            "the rest (a VAD onset's pre-roll, a stream behind, an upload) is decoded over later "
            "batches as catch-up work, after the live streams' jobs",
        ),
    ] = 400
    inference_workers: Annotated[
        int | None,
        Field(
            ge=1,
            description="threads running inference batches in each worker; unset: the usable cores "
            "shared among the workers (one each when there is a worker per core)",
        ),
    ] = None
    onnx_threads: Annotated[int, Field(ge=1, description="intra-op threads per ONNX session")] = 1
    faiss_threads: Annotated[int, Field(ge=1)] = 1
    blas_threads: Annotated[int, Field(ge=1, description="numpy BLAS threads (scoring matrix products)")] = 1
    max_queue: Annotated[
        int, Field(ge=1, description="pending inference jobs before requests are refused")
    ] = 4096
    latency_budget_ms: Annotated[
        float,
        Field(
            gt=0.0,
            description="admission control: a new stream (or upload) is refused with 1013 / 503 when the "
            "engine's measured lag, or the lag projected with one more stream, would exceed this",
        ),
    ] = 400.0
    retry_after_s: Annotated[
        int, Field(ge=1, description="Retry-After hint sent with an overload refusal")
    ] = 5
    workers: Annotated[
        int | None,
        Field(
            ge=0,
            description="engine processes behind one port (SO_REUSEPORT), each with its own model and "
            "index following the shared registry; 0 or None: one per usable CPU core (one with "
            "device cuda); 1: the single-process server",
        ),
    ] = 0
    worker_sync_timeout_s: Annotated[
        float,
        Field(
            gt=0.0,
            le=60.0,
            description="with several workers, a keyword write is answered once every worker applied it, "
            "or after this many seconds (then with X-OpenKWS-Sync: timeout)",
        ),
    ] = 2.0
    worker_id: Annotated[
        int | None,
        Field(
            ge=0,
            description="set by `openkws serve --workers N` for each worker (0..N-1); responses carry it "
            "in X-OpenKWS-Worker",
        ),
    ] = None
    offline_chunk_seconds: Annotated[
        float, Field(gt=0, description="POST /v1/detect feeds the engine in chunks")
    ] = 5.0

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.database_url is not None and not self.database_url.strip():
            raise ValueError("database_url is empty; leave it unset for the SQLite default")
        return self

    def resolved_workers(self) -> int:
        """``workers``, or the cores this process may use: its CPU affinity, capped by a cgroup v2
        CPU quota (a container limited to 2 CPUs on a 64-core node gets 2 workers, not 64). On CUDA
        the default is one process: it keeps the GPU busy, and each process would hold a CUDA context."""
        if self.workers:
            return self.workers
        if self.device == "cuda" or (self.device == "auto" and _cuda_offered()):
            return 1
        return usable_cores()

    def resolved_inference_workers(self) -> int:
        """``inference_workers``, or this worker's share of the usable cores (at least 1). Two threads
        in one process split each batch and wait on each other's GIL: with a worker per core, one
        thread each admitted more streams at lower CPU per stream (docs/BENCHMARKS.md, issue 24)."""
        if self.inference_workers:
            return self.inference_workers
        return max(1, usable_cores() // self.resolved_workers())

    def resolved_database_url(self) -> str:
        if self.database_url is None:
            return f"sqlite:///{self.data_dir / 'keywords.db'}"
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):  # psycopg 3 is the driver we ship (extra `postgres`)
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def detector_config(self) -> DetectorConfig:
        return replace(
            _DECISION,
            hold_ms=self.hold_ms,
            refractory_ms=self.refractory_ms,
            decision=self.decision,
            peak_max_ms=self.peak_max_ms,
            persistence=self.persistence,
            cohort=self.cohort == "on",
            top_k=self.top_k,
            near_miss_margin=self.near_miss_margin,
            near_miss_interval_ms=self.near_miss_interval_ms,
        )

    def confusion_policy(self) -> ConfusionPolicy:
        return ConfusionPolicy(
            self.confusable_min_cosine, self.confusable_max_phoneme_distance, self.confusable_top_k
        )

"""Everything one app instance holds, built by its lifespan handler (never at import time)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import faiss

from openkws.constants import SAMPLE_RATE
from openkws.engine.events import DecodeResult
from openkws.engine.runtime import limit_blas_threads
from openkws.engine.spotter import Spotter
from openkws.keywords.registry import KeywordRegistry
from openkws.keywords.sensitivity import Sensitivity
from openkws.keywords.store import KeywordStore
from openkws.server.auth import ApiKeys
from openkws.server.batcher import EngineLoad, MicroBatcher
from openkws.server.detection_counts import DetectionCounts, SharedCounts
from openkws.server.limits import RateLimiter, StreamCounter
from openkws.server.metrics import Metrics
from openkws.server.sessions import AudioSession, BatchRunner
from openkws.settings import Settings
from openkws.text import G2P
from openkws.text.tts import ProxyTTS

log = logging.getLogger("openkws")


class KeywordEvent(Protocol):
    """What counting needs of an engine detection (any object with a ``keyword_id``)."""

    @property
    def keyword_id(self) -> int: ...


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    spotter: Spotter
    store: KeywordStore
    registry: KeywordRegistry
    batcher: MicroBatcher[AudioSession, DecodeResult]
    counts: DetectionCounts
    shared_counts: SharedCounts | None = None  # --workers: the other workers' counts
    started_at: float = field(default_factory=time.time)
    active_streams: int = 0
    draining: bool = False
    # Set once on shutdown (SIGTERM): every open stream flushes, sends its summary and closes 1001.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    streams_closed: asyncio.Event = field(default_factory=asyncio.Event)
    streams_per_key: StreamCounter = field(default_factory=StreamCounter)
    enroll_limiter: RateLimiter = field(init=False)
    api_keys: ApiKeys = field(init=False)

    def __post_init__(self) -> None:
        self.enroll_limiter = RateLimiter(self.settings.enroll_rate_per_s, self.settings.enroll_burst)
        self.api_keys = ApiKeys(self.store, self.settings.api_key_cache_s)
        self.streams_closed.set()

    def record_detections(self, tenant: str, detections: Sequence[KeywordEvent], source: str) -> None:
        """Count detections: Prometheus by source only, per keyword in :class:`DetectionCounts`."""
        if detections:
            self.metrics.detections.labels(source).inc(len(detections))
            self.counts.add(tenant, (d.keyword_id for d in detections))

    def detection_totals(self, tenant: str) -> tuple[float, Tally[int]]:
        """``(since, counts)`` of ``tenant``'s detections: this process's, or with ``--workers`` the
        whole server's (file reads: call it off the event loop)."""
        if self.shared_counts is None:
            return self.counts.tenant(tenant)
        return self.shared_counts.tenant(tenant)

    def stream_opened(self) -> None:
        self.active_streams += 1
        self.streams_closed.clear()
        self.metrics.active_streams.set(self.active_streams)

    def stream_ended(self) -> None:
        self.active_streams -= 1
        if self.active_streams == 0:
            self.streams_closed.set()
        self.metrics.active_streams.set(self.active_streams)

    async def drain(self, timeout: float) -> bool:
        """Stop taking streams and let the open ones end with a summary (close 1001); True when
        all ended within ``timeout`` seconds. Idempotent."""
        self.draining = True
        self.shutting_down.set()
        try:
            await asyncio.wait_for(self.streams_closed.wait(), timeout)
            return True
        except TimeoutError:
            log.warning("%d stream(s) still open after %.0f s of shutdown", self.active_streams, timeout)
            return False


def load_engine(
    settings: Settings, metrics: Metrics, counts: DetectionCounts, g2p: G2P | None = None
) -> tuple[Spotter, KeywordStore, KeywordRegistry]:
    """Blocking start-up work (run in a thread): models, contract check, store, the keyword registry
    (index rebuilt from the store). The keyword gauge reads the registry, so no route updates it.

    Raises ``ModelContractError`` (model mismatch) or a SQLAlchemy error (database unreachable).
    """
    # Thread pools inside FAISS and BLAS would fight the inference workers for the cores.
    faiss.omp_set_num_threads(settings.faiss_threads)
    limit_blas_threads(settings.blas_threads)
    t0 = time.perf_counter()
    spotter = Spotter.load(
        settings.model_dir,
        settings.detector_config(),
        device=settings.device,
        threads=settings.onnx_threads,
        g2p=g2p,
        verify_hashes=settings.verify_model_hashes,
    )
    store = KeywordStore(settings.resolved_database_url(), settings.sqlite_synchronous)
    registry = KeywordRegistry(
        store,
        spotter,
        settings.default_threshold,
        settings.confusion_policy(),
        max_keywords_per_tenant=settings.max_keywords_per_tenant,
        tts=ProxyTTS(settings.espeak_binary, settings.flite_binary),
        on_removed=counts.forget,
        sensitivity=Sensitivity.load(settings.model_dir, spotter),
        hit_rate=settings.enroll_hit_rate,
    )
    n, diff = registry.reconcile()
    if diff:
        log.info("keyword index was out of step with the store (%s); rebuilt from the store", diff)
    spec = spotter.spec
    metrics.set_model(
        {
            "model_version": spec.model_version,
            "frontend": spec.frontend,
            "embedding_dim": str(spec.embedding_dim),
            "onnx_backend": spotter.onnx_backend,
            "index_backend": spotter.index_backend,
            "database": store.backend,
        }
    )
    metrics.watch(metrics.keywords, registry.total)
    log.info(
        "openkws ready: model %s (%s), onnx %s, index %s, %d keywords from %s, %.1f s",
        spec.model_version,
        spec.frontend,
        spotter.onnx_backend,
        spotter.index_backend,
        n,
        store.backend,
        time.perf_counter() - t0,
    )
    return spotter, store, registry


def make_batcher(
    settings: Settings, spotter: Spotter, metrics: Metrics
) -> MicroBatcher[AudioSession, DecodeResult]:
    """The micro-batcher over the engine: each job decodes at most ``live_step_ms`` of a stream's
    audio, and a job with more left (an onset's pre-roll burst, a stream behind, an upload) is
    catch-up work, batched after the live streams' jobs (:mod:`openkws.server.batcher`)."""
    threads = settings.resolved_inference_workers()
    load = EngineLoad(threads)
    step = max(1, settings.live_step_ms * SAMPLE_RATE // 1000)
    return MicroBatcher(
        BatchRunner(spotter, metrics, load, step),
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000.0,
        workers=threads,
        max_queue=settings.max_queue,
        metrics=metrics,
        load=load,
        catch_up=lambda s: s.catching_up(step),
    )

"""onnxruntime session options as one typed value, and a way to rebuild a spotter's sessions with them.

Why these knobs (measured with ``bench.profile_frontend --sweep-embedding``, see docs/BENCHMARKS.md):

* ``threads``: intra-op threads per session. The service already runs ``inference_workers`` batches
  in parallel, so one thread per session is the default; a second intra-op thread only helps a
  single large call (GPU-style batching on a CPU) and costs spin-waiting CPU otherwise.
* ``spinning``: onnxruntime's pool threads busy-wait between ops. With more than one intra-op
  thread on a shared 2-core machine that spinning is pure overhead.
* ``arena``: the CPU memory arena; off trades a little speed for less resident memory.
* ``optimization``: graph optimisation level (``all`` fuses Conv+BatchNorm and activations).
* ``fixed_batch``: pin the symbolic batch dimension (``free_dimension_override``) so the graph is
  planned for one shape; only for callers that always run that many rows (another batch size fails;
  the streaming path sometimes completes two embeddings in one 100 ms chunk, so it is off by default).

Example:
    >>> o = OrtOptions(threads=2, spinning=False)
    >>> o.describe()
    'threads=2 spin=off arena=on opt=all'
    >>> session_options(o).intra_op_num_threads
    2
    >>> OrtOptions(threads=0)
    Traceback (most recent call last):
    ...
    ValueError: threads must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from openkws.engine.spotter import Spotter

Optimization = Literal["disable", "basic", "extended", "all"]
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# Symbolic batch dimension of each graph (what ``fixed_batch`` pins).
BATCH_DIMS = {"speech_embedding": "unk__314", "melspectrogram": "batch_size"}


@dataclass(frozen=True)
class OrtOptions:
    threads: int = 1
    spinning: bool = True
    arena: bool = True
    optimization: Optimization = "all"
    fixed_batch: int | None = None

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.optimization not in _LEVELS:
            raise ValueError(f"optimization must be one of {sorted(_LEVELS)}, got {self.optimization!r}")
        if self.fixed_batch is not None and self.fixed_batch < 1:
            raise ValueError(f"fixed_batch must be >= 1 or None, got {self.fixed_batch}")

    def describe(self) -> str:
        s = (
            f"threads={self.threads} spin={'on' if self.spinning else 'off'} "
            f"arena={'on' if self.arena else 'off'} opt={self.optimization}"
        )
        return s + (f" batch={self.fixed_batch}" if self.fixed_batch else "")


def session_options(opts: OrtOptions, batch_dim: str | None = None) -> ort.SessionOptions:
    """``ort.SessionOptions`` for ``opts``; ``batch_dim`` names the graph's symbolic batch dimension."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = opts.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = _LEVELS[opts.optimization]
    so.enable_cpu_mem_arena = opts.arena
    if not opts.spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if opts.fixed_batch and batch_dim:
        so.add_free_dimension_override_by_name(batch_dim, opts.fixed_batch)
    return so


def apply_options(sp: Spotter, model_dir: Path, opts: OrtOptions) -> None:
    """Rebuild ``sp``'s audio-side sessions (mel, embedding, acoustic head) with ``opts``, in place,
    on the providers the spotter already uses. The text encoder is left alone (enrollment only)."""
    providers = list(sp.sessions.providers.names)
    spec = sp.spec

    def make(role: str) -> ort.InferenceSession:
        so = session_options(opts, BATCH_DIMS.get(role))
        return ort.InferenceSession(str(spec.file_path(Path(model_dir), role)), so, providers=providers)

    mel = make("melspectrogram")
    emb = make("speech_embedding") if sp.sessions.speech_embedding is not None else None
    sp.sessions = replace(
        sp.sessions,
        melspectrogram=mel,
        speech_embedding=emb,
        acoustic_frames=make("acoustic_frames"),
        acoustic_pool=make("acoustic_pool"),
    )
    sp.features.mel = mel
    sp.features.embedding = emb
    # the acoustic encoder holds its own references (no public setter: rebuilt here only)
    sp.encoders._frames = sp.sessions.acoustic_frames
    sp.encoders._pool = sp.sessions.acoustic_pool

"""ONNX sessions for one model directory: provider choice (CUDA when present, else CPU), the providers
the sessions really use, and the start-up contract check of every graph's metadata and input/output
names against ``model.json``.

A mismatch raises :class:`~openkws.engine.model_spec.ModelContractError` with a message naming the
file, the key, what the file says and what ``model.json`` says, so the service refuses to start.
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from openkws.engine.model_spec import GRAPHS, ModelContractError, ModelSpec, graph_metadata, required_roles
from openkws.text import load_inventory

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class Providers:
    """onnxruntime execution providers: asked for at start-up, or (after loading) in use.

    ``fallback`` is true when CUDA was asked for but some session runs without it (onnxruntime
    drops a provider it cannot initialise, e.g. onnxruntime-gpu without the CUDA/cuDNN libraries,
    with only a log line); ``warning`` then says so in words.
    """

    names: tuple[str, ...]
    backend: Literal["cpu", "cuda"]
    requested: Device = "auto"
    fallback: bool = False
    warning: str | None = None


def choose_providers(device: Device) -> Providers:
    """``auto`` picks CUDA when onnxruntime offers it; ``cuda`` insists (error when unavailable)."""
    available = ort.get_available_providers()
    if device == "cpu":
        return Providers((CPU_PROVIDER,), "cpu", device)
    if CUDA_PROVIDER in available:
        return Providers((CUDA_PROVIDER, CPU_PROVIDER), "cuda", device)
    if device == "cuda":
        raise ModelContractError(
            f"device 'cuda' requested but onnxruntime offers only {available}; "
            "install the `gpu` extra (onnxruntime-gpu) or set OPENKWS_DEVICE=cpu|auto"
        )
    return Providers((CPU_PROVIDER,), "cpu", device)


def providers_in_use(chosen: Providers, sessions: dict[str, ort.InferenceSession]) -> Providers:
    """What the sessions really run on (``session.get_providers()``), against what was ``chosen``.

    Raises :class:`ModelContractError` when device ``cuda`` was requested and a session has no CUDA.
    """
    used: list[str] = []
    without_cuda: list[str] = []
    for role, sess in sessions.items():
        got = sess.get_providers()
        used += [p for p in got if p not in used]
        if CUDA_PROVIDER not in got:
            without_cuda.append(role)
    backend: Literal["cpu", "cuda"] = "cuda" if sessions and not without_cuda else "cpu"
    fallback = chosen.backend == "cuda" and bool(without_cuda)
    warning = None
    if fallback:
        warning = (
            f"device {chosen.requested!r}: onnxruntime offers {CUDA_PROVIDER} but the "
            f"{', '.join(without_cuda)} session(s) run on {', '.join(sessions[without_cuda[0]].get_providers())}; "
            "check the CUDA and cuDNN libraries that onnxruntime-gpu needs (its log says which failed), "
            "or set OPENKWS_DEVICE=cpu"
        )
        if chosen.requested == "cuda":
            raise ModelContractError(warning)
    return Providers(tuple(used), backend, chosen.requested, fallback, warning)


def limit_blas_threads(n: int) -> str | None:
    """Cap numpy's BLAS thread pool at ``n`` (process-wide); returns how, or None if it could not.

    The service runs inference on its own bounded worker threads; OpenBLAS threads on top of them
    oversubscribe the cores (a 400x256x100 product took 5 ms with 2 threads vs 1 ms with 1 on a
    busy 2-core machine). Uses threadpoolctl when installed, else numpy's bundled OpenBLAS directly.
    """
    try:
        from threadpoolctl import threadpool_limits  # optional dependency: imported where it is used

        threadpool_limits(n, user_api="blas")
        return "threadpoolctl"
    except ImportError:
        pass
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for so in sorted(libdir.glob("*openblas*.so*")):
        try:
            lib = ctypes.CDLL(str(so))  # already loaded by numpy: same handle, same thread pool
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(int(n))
                return name
    log.info("could not limit BLAS threads (no threadpoolctl, no bundled OpenBLAS found)")
    return None


def make_session(path: Path, providers: Providers, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=list(providers.names))


def _same(key: str, found: str, expected: str) -> bool:
    if key == "windows_frames":  # compare the numbers, not the JSON spacing
        return re.findall(r"\d+", found) == re.findall(r"\d+", expected)
    return found.strip() == expected


def check_session(spec: ModelSpec, role: str, session: ort.InferenceSession, path: Path) -> None:
    """Raise :class:`ModelContractError` when the graph does not match ``model.json``."""
    props = session.get_modelmeta().custom_metadata_map
    graph = GRAPHS[role]
    for key, want in graph_metadata(spec, role).items():
        if key not in props:
            if graph.exported:
                raise ModelContractError(
                    f"{path.name}: ONNX metadata lacks {key!r} (model.json says {want!r}); re-export the model"
                )
            continue
        if not _same(key, props[key], want):
            raise ModelContractError(
                f"{path.name}: ONNX metadata {key}={props[key]!r} but model.json says {want!r}; "
                "the graph and model.json come from different exports"
            )
    inputs, outputs = graph.inputs, graph.outputs
    got_in = tuple(i.name for i in session.get_inputs())
    got_out = tuple(o.name for o in session.get_outputs())
    # Outputs: the contract's names must be there; extras are allowed (e.g. the front-end copy's
    # pre-floor mel output, ``model_spec.FRAMEWISE_MEL_OUTPUT``).
    if got_in != inputs or not set(outputs) <= set(got_out):
        raise ModelContractError(
            f"{path.name}: inputs {got_in} / outputs {got_out}; the contract needs {inputs} / {outputs}"
        )
    dims = {
        "acoustic_frames": (session.get_inputs()[0].shape[-1], spec.feature_dim, "feature_dim"),
        "acoustic_pool": (session.get_outputs()[0].shape[-1], spec.embedding_dim, "embedding_dim"),
        "text": (session.get_outputs()[0].shape[-1], spec.embedding_dim, "embedding_dim"),
    }
    if role in dims:
        got, want_dim, name = dims[role]
        if isinstance(got, int) and got != want_dim:
            raise ModelContractError(f"{path.name}: last dimension {got} but model.json {name} is {want_dim}")
    if role == "acoustic_pool":
        frame_in = session.get_inputs()[0].shape[-1]
        if isinstance(frame_in, int) and frame_in != spec.frame_dim:
            raise ModelContractError(
                f"{path.name}: frames dimension {frame_in} but model.json frame_dim is {spec.frame_dim}"
            )


def check_inventory(spec: ModelSpec) -> None:
    inv = load_inventory()
    if spec.phoneme_inventory_hash != inv.hash:
        raise ModelContractError(
            f"model phoneme inventory {spec.phoneme_inventory!r} (hash {spec.phoneme_inventory_hash}) differs from "
            f"this service's {inv.name!r} (hash {inv.hash}); the model was trained with other phoneme ids"
        )
    if min(spec.windows_frames) <= spec.acoustic_context_frames:
        raise ModelContractError(
            f"smallest window {min(spec.windows_frames)} frames is not longer than the acoustic context "
            f"{spec.acoustic_context_frames} frames"
        )


@dataclass(frozen=True)
class ModelSessions:
    """All sessions of one model directory, checked against its spec."""

    spec: ModelSpec
    providers: Providers
    melspectrogram: ort.InferenceSession
    speech_embedding: ort.InferenceSession | None
    acoustic_frames: ort.InferenceSession
    acoustic_pool: ort.InferenceSession
    text: ort.InferenceSession


def load_sessions(
    spec: ModelSpec, model_dir: Path, device: Device = "auto", threads: int = 1
) -> ModelSessions:
    check_inventory(spec)
    providers = choose_providers(device)
    sessions: dict[str, ort.InferenceSession] = {}
    for role in required_roles(spec.frontend):
        path = spec.file_path(model_dir, role)
        try:
            sess = make_session(path, providers, threads)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelContractError(f"{path}: onnxruntime cannot load it ({e})") from e
        check_session(spec, role, sess, path)
        sessions[role] = sess
    in_use = providers_in_use(providers, sessions)
    if in_use.warning:
        log.warning("CUDA FALLBACK: %s", in_use.warning)
    else:
        log.info("onnxruntime sessions (device %r) use %s", device, ", ".join(in_use.names))
    return ModelSessions(
        spec=spec,
        providers=in_use,
        melspectrogram=sessions["melspectrogram"],
        speech_embedding=sessions.get("speech_embedding"),
        acoustic_frames=sessions["acoustic_frames"],
        acoustic_pool=sessions["acoustic_pool"],
        text=sessions["text"],
    )

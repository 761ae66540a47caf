"""Weights of an exported model directory back into a :class:`KWSModel`, to fine-tune a shipped
model when its training checkpoint is gone (checkpoints are not committed; the ONNX files are).

Export keeps most parameter names (``m.<name>`` in each graph, ``m`` being the exported module), so
those load by name. Two kinds are renamed by the ONNX exporter and are recovered from the graph:

- LSTM weights (``onnx::LSTM_*``) from the LSTM nodes, in trace order (forward then backward
  direction, layer by layer), with ONNX's gate order (i, o, f, c) turned back into PyTorch's
  (i, f, g, o) and ONNX's joint bias split into ``bias_ih`` and ``bias_hh``;
- linear weights exported as ``MatMul`` constants (transposed).

:func:`import_exported` checks the result against the ONNX graphs on random inputs and raises if
they disagree, so a wrong mapping can never train silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from openkws.engine.model_spec import GRAPHS
from openkws.training.nets.kws_model import KWSModel
from openkws.training.nets.text_encoder import MaskedBiLSTM

# The exported graphs (roles of :data:`~openkws.engine.model_spec.GRAPHS`) -> the KWSModel module each holds.
MODULES = {"acoustic_frames": "frames", "acoustic_pool": "pool", "text": "text"}


def _gates(w: np.ndarray) -> np.ndarray:
    """ONNX LSTM gate blocks (i, o, f, c) -> PyTorch (i, f, g, o) along the first axis."""
    i, o, f, c = np.split(w, 4, axis=0)
    return np.concatenate([i, f, c, o], axis=0)


def _lstm_weights(
    graph: onnx.GraphProto, inits: dict[str, np.ndarray], module: nn.Module
) -> dict[str, np.ndarray]:
    lstms = [m for m in module.modules() if isinstance(m, nn.LSTM)]
    nodes = [n for n in graph.node if n.op_type == "LSTM"]
    if len(nodes) != len(lstms):
        raise ValueError(f"graph has {len(nodes)} LSTM nodes, the model {len(lstms)} LSTMs")
    names = {id(m): n for n, m in module.named_modules()}
    bilstm = getattr(module, "lstm", None)
    if not isinstance(bilstm, MaskedBiLSTM):
        raise ValueError(
            f"LSTMs are read back only from a MaskedBiLSTM named lstm, not {type(bilstm).__name__}"
        )
    # trace order: each layer's forward direction, then its backward one
    order = [m for pair in zip(bilstm.fw, bilstm.bw, strict=True) for m in pair if isinstance(m, nn.LSTM)]
    out: dict[str, np.ndarray] = {}
    for node, lstm in zip(nodes, order, strict=True):
        w, r, b = (inits[x] for x in node.input[1:4])
        hidden = lstm.hidden_size
        prefix = names[id(lstm)]
        out[f"{prefix}.weight_ih_l0"] = _gates(w[0])
        out[f"{prefix}.weight_hh_l0"] = _gates(r[0])
        out[f"{prefix}.bias_ih_l0"] = _gates(b[0, : 4 * hidden])
        out[f"{prefix}.bias_hh_l0"] = _gates(b[0, 4 * hidden :])
    return out


def _graph_state(path: Path, module: nn.Module) -> dict[str, torch.Tensor]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    target = module.state_dict()
    state = {k[2:]: v for k, v in inits.items() if k.startswith("m.") and k[2:] in target}
    if any(isinstance(m, nn.LSTM) for m in module.modules()):
        state.update(_lstm_weights(model.graph, inits, module))
    for key, ref in target.items():  # linear weights exported transposed as MatMul constants
        if key in state or not key.endswith("weight") or ref.dim() != 2:
            continue
        cands = [v for k, v in inits.items() if not k.startswith("m.") and v.shape == tuple(ref.shape[::-1])]
        if len(cands) == 1:
            state[key] = cands[0].T
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{path.name}: no weights found for {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return {k: torch.from_numpy(np.array(v)).to(target[k].dtype) for k, v in state.items()}


@torch.no_grad()
def _check(model: KWSModel, model_dir: Path, atol: float) -> None:
    model.eval()
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((2, model.context_frames + 8, model.feature_dim)).astype(np.float32)
    ids = np.array([[5, 6, 7, 2, 8], [9, 10, 0, 0, 0]], np.int64)
    lengths = np.array([5, 2], np.int64)
    frames = rng.standard_normal((2, 6, model.cfg.acoustic.frame_dim)).astype(np.float32)
    mask = np.ones((2, 6), np.float32)
    mask[1, 4:] = 0
    inputs = {"acoustic_frames": (feats,), "text": (ids, lengths), "acoustic_pool": (frames, mask)}
    for role, args in inputs.items():
        a = getattr(model, MODULES[role])(*(torch.from_numpy(x) for x in args)).numpy()
        path = model_dir / GRAPHS[role].file
        b = GRAPHS[role].run(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), *args)
        if a.shape != b.shape or not np.allclose(a, b, atol=atol):
            err = float(np.abs(a - b).max()) if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
            raise ValueError(f"imported {role} weights disagree with {path} (max error {err})")


def import_exported(model: KWSModel, model_dir: str | Path, atol: float = 1e-4) -> KWSModel:
    """Load ``model_dir``'s ONNX weights into ``model`` (same geometry), checked against the graphs."""
    model_dir = Path(model_dir)
    for role, attr in MODULES.items():
        path = model_dir / GRAPHS[role].file
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not an exported openkws model directory")
        module = getattr(model, attr)
        module.load_state_dict(_graph_state(path, module), strict=False)
    was_training = model.training
    _check(model, model_dir, atol)
    model.train(was_training)
    return model

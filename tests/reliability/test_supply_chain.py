"""Supply chain and untrusted input: model files are verified before loading (a tampered file
refuses to start, in process and as ``openkws serve``), nothing in the service can unpickle, and
upload file names never become paths."""

from __future__ import annotations

import ast
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench._server import ServerProcess
from openkws.engine.model_spec import ModelContractError, load_spec
from openkws.server.app import create_app
from openkws.settings import Settings
from tests.service.conftest import wav_bytes

SERVICE = Path(__file__).resolve().parents[2] / "src" / "openkws"


def _tampered(model_dir: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "tampered"
    shutil.copytree(model_dir, bad)
    f = bad / json.loads((bad / "model.json").read_text())["files"]["acoustic_pool"]["path"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: same size, still a loadable graph most likely
    f.write_bytes(bytes(data))
    return bad


def test_tampered_model_refuses_to_start_in_process(
    model_dir: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    bad = _tampered(model_dir, tmp_path)
    with pytest.raises(ModelContractError, match="sha256 mismatch"):
        load_spec(bad)
    with (
        pytest.raises(ModelContractError, match="sha256 mismatch"),
        TestClient(create_app(make_settings(model_dir=bad))),
    ):
        pass


def test_tampered_model_refuses_to_start_serve(model_dir: Path, tmp_path: Path) -> None:
    srv = ServerProcess(_tampered(model_dir, tmp_path), tmp_path / "data", tmp_path / "server.log")
    srv.start()
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            srv.wait_ready()
    finally:
        srv.kill9()
    log = srv.log_tail(100_000)
    assert "sha256 mismatch" in log and "refuses to start" in log
    assert srv.proc is not None and srv.proc.returncode != 0


def test_model_files_stay_inside_the_model_directory(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "escape"
    shutil.copytree(model_dir, bad)
    spec = json.loads((bad / "model.json").read_text())
    outside = tmp_path / "outside.onnx"
    shutil.copy(bad / spec["files"]["text"]["path"], outside)
    spec["files"]["text"]["path"] = "../outside.onnx"
    (bad / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ModelContractError, match="leaves"):
        load_spec(bad)


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(f: ast.expr) -> str:
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _safe_loader(path: Path, call: ast.Call) -> bool:
    """``yaml.load(..., Loader=X)`` where ``X``, defined in that module, is a ``yaml.SafeLoader``."""
    import importlib

    import yaml

    loader = {k.arg: k.value for k in call.keywords}.get("Loader")
    if not isinstance(loader, ast.Name):
        return False
    module = importlib.import_module(".".join(("openkws", *path.relative_to(SERVICE).with_suffix("").parts)))
    cls = getattr(module, loader.id, None)
    return isinstance(cls, type) and issubclass(cls, yaml.SafeLoader)


def test_service_never_unpickles() -> None:
    """No pickle-capable loader anywhere in the service: no pickle/dill/joblib/shelve/marshal
    imports, no torch.load, no yaml.load, and every np.load passes allow_pickle=False."""
    banned_modules = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
    problems = []
    # the runtime only: openkws.training (behind the `train` extra) loads its own checkpoints
    files = sorted(p for p in SERVICE.rglob("*.py") if "training" not in p.relative_to(SERVICE).parts)
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{path.name}: imports {m}" for m in mods if m.split(".")[0] in banned_modules]
        for call in _calls(tree):
            name = _name(call.func)
            if name == "yaml.load" and _safe_loader(path, call):
                continue
            if name in (
                "torch.load",
                "yaml.load",
                "yaml.unsafe_load",
                "pd.read_pickle",
                "pandas.read_pickle",
            ):
                problems.append(f"{path.name}:{call.lineno}: {name}")
            if name in ("np.load", "numpy.load"):
                kw = {k.arg: k.value for k in call.keywords}
                ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
                if not ok:
                    problems.append(f"{path.name}:{call.lineno}: {name} without allow_pickle=False")
    assert not problems, problems


def test_upload_names_are_never_paths(client: TestClient, tmp_path: Path, speech: object) -> None:
    """Uploads are decoded from memory; the client's file name is only quoted in error messages (AST:
    ``.filename`` is read once, in the detect router, and handed to ``decode_file`` as ``name``, which
    only ``repr``s it), and hostile names write nothing anywhere."""
    uses = [
        f"{p.name}:{n.lineno}"
        for p in SERVICE.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Attribute) and n.attr == "filename"
    ]
    assert len(uses) == 1 and uses[0].startswith("detect.py:"), uses
    r = client.post("/v1/detect", files={"file": ("../x<b>.wav", b"not audio" * 20, "audio/wav")})
    assert r.status_code == 415 and "'../x<b>.wav'" in r.json()["error"]["message"]  # quoted as text
    target = tmp_path / "evil.wav"
    data_dir = Path(client.app.state.openkws.settings.data_dir)  # type: ignore[attr-defined]
    before = sorted(p.name for p in data_dir.iterdir())
    wav = wav_bytes(np.zeros(8000, np.float32))
    for name in (f"../../../../../../{target}", str(target), "..\\..\\evil.wav", "evil\x00.wav"):
        r = client.post("/v1/detect", files={"file": (name, wav, "audio/wav")})
        assert r.status_code == 200, r.text
    assert not target.exists()
    assert sorted(p.name for p in data_dir.iterdir()) == before

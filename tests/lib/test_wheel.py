"""The wheel holds the whole package: built from the checkout, installed (not editable) into a fresh
virtual environment, and every module imported from there.

An editable install imports from ``src/`` and hides a sub-package the wheel left out (the wheel once
shipped without ``openkws.training.loader`` and ``openkws.training.evaluate``, so ``openkws train
run`` failed in the training image). The environment sees the system's site-packages for the
dependencies (``--system-site-packages``; the wheel goes in with ``--no-deps``), and the test checks
that ``openkws`` really comes from the environment, not from the checkout. A short ``openkws train run
--config smoke`` runs from that environment too (the training image installs the same way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
MUST_SHIP = (
    "openkws/training/loader/__init__.py",
    "openkws/training/evaluate/__init__.py",
    "openkws/models/default/model.json",
    "openkws/server/static/index.html",
    "openkws/training/configs/smoke.yaml",
)
# Walks the package *as installed* and imports each module; prints where openkws came from.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import openkws
names = sorted(m.name for m in pkgutil.walk_packages(openkws.__path__, "openkws.")
               if not m.name.endswith(".__main__"))
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}"
print(json.dumps({"file": openkws.__file__, "modules": names, "failed": failed}))
"""


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout (the build writes egg-info and build/ beside it)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, tree, cwd=tree)
    (whl,) = out.glob("openkws-*.whl")
    return whl


def test_wheel_carries_every_module_and_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [m for m in MUST_SHIP if m not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    source = {p.relative_to(SRC).as_posix() for p in (SRC / "openkws").rglob("*.py")}
    assert not source - names, f"{wheel.name} lacks modules of src/: {sorted(source - names)[:10]}"
    assert {n.split("/")[0] for n in names if not n.startswith("openkws-")} == {"openkws"}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (not editable)."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=venv)
    _run(
        venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=venv
    )
    return venv


def _outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.mark.slow
def test_installed_wheel_imports_every_module(venv: Path, tmp_path: Path) -> None:
    got = json.loads(
        _run(venv / "bin" / "python", "-c", IMPORT_ALL, cwd=tmp_path, env=_outside_env()).splitlines()[-1]
    )
    assert Path(got["file"]).is_relative_to(venv), f"openkws came from {got['file']}, not the wheel"
    source = {_module(p) for p in (SRC / "openkws").rglob("*.py") if p.name != "__main__.py"}
    assert source - {"openkws"} <= set(got["modules"]), sorted(source - set(got["modules"]) - {"openkws"})
    assert not got["failed"], got["failed"]


@pytest.mark.slow
def test_installed_wheel_trains_the_smoke_config(venv: Path, tmp_path: Path) -> None:
    """`openkws train run --config smoke` from the installed wheel (the shipped config, the loader and the
    validation), shortened to 2 epochs of 2 steps on a small espeak-ng corpus."""
    from tests.training.corpus import DEV_WORDS, TRAIN_WORDS, build_corpus

    manifest = build_corpus(tmp_path / "corpus", TRAIN_WORDS[:16], DEV_WORDS)
    run = tmp_path / "run"
    sets = [
        f"data.manifest={manifest}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.keywords_per_batch=8",
        "train.epochs=2",
        "train.batches_per_epoch=2",
        "train.val_every=2",
    ]
    args = [a for s in sets for a in ("--set", s)]
    out = _run(
        venv / "bin" / "openkws",
        "train",
        "run",
        "--config",
        "smoke",
        "--out",
        run,
        "--cache-workers",
        "1",
        *args,
        cwd=tmp_path,
        env=_outside_env(),
    )
    assert "trained 2 epochs / 4 steps" in out, out
    assert (run / "checkpoints" / "best.pt").is_file()

"""Copies of a model directory for tests, as the export contract (openkws.engine.model_spec) wants them.

Tests that need a model directory of their own call :func:`copy_model` instead of copying files by
hand: a hand copy that leaves out the calibration bank keeps a whitening the contract then refuses
(a whitening needs its bank). ``bank=False`` leaves out both, as ``openkws export whiten --mode none``
would remove the whitening, so the copy is a valid bankless model with plain proxies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openkws
from openkws.engine.calibration import BANK_FILE
from openkws.engine.model_spec import ModelSpec, load_spec
from openkws.engine.whitening import WHITENING_FILE

PACKAGED_MODEL = Path(openkws.__file__).parent / "models" / "default"


def copy_model(dst: Path, src: Path = PACKAGED_MODEL, *, bank: bool = True, whitening: bool = True) -> Path:
    """``src`` (default: the packaged model) copied to ``dst`` (must not exist), checked by ``load_spec``.

    ``bank=False``: without ``calibration_bank.npz`` and hence without the whitening; ``whitening=False``:
    without the whitening (file and ``model.json`` entry; plain tts/both proxies). Returns ``dst``."""
    whitening = whitening and bank
    left_out = {"__pycache__"} | (set() if bank else {BANK_FILE}) | (set() if whitening else {WHITENING_FILE})
    shutil.copytree(src, dst, ignore=lambda _d, names: [n for n in names if n in left_out])
    if not whitening:
        spec = ModelSpec.model_validate(json.loads((dst / "model.json").read_text()))
        files = {r: f for r, f in spec.files.items() if r != "whitening"}
        ModelSpec.model_validate({**spec.model_dump(), "files": files}).write(dst)
    load_spec(dst)
    return dst

"""ONNX weights of the shipped model back into torch: exact parity, and clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from openkws.training.background_probe import load_exported
from openkws.training.config import load_config
from openkws.training.nets.kws_model import build_model
from openkws.training.nets.onnx_import import import_exported

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "openkws" / "models" / "default"


def test_shipped_model_round_trips_through_its_onnx_graphs() -> None:
    model = load_exported(SHIPPED)  # raises if any graph disagrees with the imported weights
    assert model.windows == (8, 12, 16, 22, 30)


def test_other_geometry_is_refused() -> None:
    small = build_model(load_config("asyp_long", {"model": {"acoustic": {"channels": 192}}}).model)
    with pytest.raises((ValueError, RuntimeError)):
        import_exported(small, SHIPPED)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    model = build_model(load_config("asyp_long").model)
    with pytest.raises(FileNotFoundError, match="not an exported openkws model directory"):
        import_exported(model, tmp_path)

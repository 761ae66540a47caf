"""The package carries its model, keeps its data per user, and installs only the `openkws` name."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from openkws.settings import Settings, packaged_model_dir, user_data_dir

ROOT = Path(__file__).resolve().parents[2]


def test_default_model_is_package_data() -> None:
    d = packaged_model_dir()
    assert (d / "model.json").is_file() and d.parent.name == "models"
    assert Settings().model_dir == d
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "default/*" in cfg["package-data"]["openkws.models"]
    size = sum(f.stat().st_size for f in d.iterdir())
    assert size <= 25 * 2**20, f"the packaged model is {size / 2**20:.1f} MiB; the budget is 25"


def test_only_openkws_is_installed_at_top_level() -> None:
    """setuptools finds packages under src/ only, and only ``openkws*`` (tests/lib/test_wheel.py checks
    the built wheel itself)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["packages"]["find"] == {"where": ["src"], "include": ["openkws*"]}
    assert {p.name for p in (ROOT / "src").iterdir() if not p.name.endswith(".egg-info")} == {"openkws"}


def test_keyword_database_defaults_to_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OPENKWS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert user_data_dir() == tmp_path / "openkws"
    assert Settings().resolved_database_url() == f"sqlite:///{tmp_path / 'openkws' / 'keywords.db'}"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert user_data_dir() == Path.home() / ".local" / "share" / "openkws"

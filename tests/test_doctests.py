"""Every ``>>>`` example in the ``openkws`` package (src/openkws, training included) runs."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("openkws",)


def _walk() -> list[str]:
    names = []
    for pkg in PACKAGES:
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.submodule_search_locations is not None, pkg
        names += [i.name for i in pkgutil.walk_packages(list(spec.submodule_search_locations), pkg + ".")]
    return names


def _modules_with_examples() -> list[str]:
    names = []
    for name in _walk():
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and ">>>" in Path(origin).read_text(encoding="utf-8"):
            names.append(name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_package_has_examples() -> None:
    assert len(MODULES) >= 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    if name.startswith("openkws.training"):
        pytest.importorskip("torch", reason="the training extra is not installed")
    module = importlib.import_module(name)
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

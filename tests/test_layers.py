"""The layer contract of ``src/openkws`` (docs/ARCHITECTURE.md, "Layers"), checked on the source.

Every import of every module counts: top-level, inside functions and under ``TYPE_CHECKING``, absolute
or relative. A layer is the first name under ``openkws`` (``openkws.engine.stream`` is in ``engine``,
``openkws.kws`` in ``kws``). Each rule either lists what a layer may import from the package
(``only``) or what it must not (``never``); nothing in the package imports the ``bench`` folder.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "openkws"


@dataclass(frozen=True)
class Rule:
    layer: str
    only: frozenset[str] | None = None  # the layers it may import (itself included)
    never: frozenset[str] = frozenset()  # the layers it must not import
    why: str = ""

    def allows(self, target: str) -> bool:
        if self.only is not None:
            return target in self.only
        return target not in self.never

    def __str__(self) -> str:
        if self.only is not None:
            allowed = ", ".join(f"openkws.{x}" for x in sorted(self.only - {self.layer}))
            return f"{self.layer} imports only {allowed} from the package ({self.why})"
        banned = ", ".join(f"openkws.{x}" for x in sorted(self.never))
        return f"{self.layer} never imports {banned} ({self.why})"


EDGE = frozenset({"server", "cli", "kws", "wyoming"})
RULES = (
    Rule("text", only=frozenset({"text", "constants"}), why="G2P and phonetics sit below the engine"),
    Rule(
        "engine",
        only=frozenset({"engine", "text", "constants"}),
        why="the detection core knows no storage, HTTP, CLI or training",
    ),
    Rule("keywords", never=EDGE | {"training"}, why="the registry serves the edge, it does not call it"),
    Rule("training", never=EDGE | {"keywords"}, why="training reaches the engine, never the service"),
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. openkws.engine.stream
    path: Path
    line: int
    target: str  # the imported module, absolute


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, src: Path = SRC) -> list[Import]:
    """Every import statement of one file, anywhere in it, with relative imports made absolute."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(name, path, node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from openkws import kws` imports the module openkws.kws: count the names too
            out += [
                Import(name, path, node.lineno, f"{base}.{a.name}" if base == PACKAGE else base)
                for a in node.names
            ]
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def violations(files: list[Path], src: Path = SRC) -> list[str]:
    rules = {r.layer: r for r in RULES}
    found = []
    for f in files:
        for imp in imports_of(f, src):
            where = f"{imp.path.relative_to(src)}:{imp.line} ({imp.module}) imports {imp.target}"
            if imp.target.split(".")[0] == "bench":
                found.append(
                    f"{where}: rule 'the package never imports bench/' (benchmarks call the package)"
                )
                continue
            rule = rules.get(layer_of(imp.module) or "")
            target = layer_of(imp.target)
            if rule is not None and target is not None and not rule.allows(target):
                found.append(f"{where}: rule '{rule}'")
    return found


def package_files() -> list[Path]:
    return sorted((SRC / PACKAGE).rglob("*.py"))


def test_every_layer_keeps_its_imports() -> None:
    found = violations(package_files())
    assert not found, "layer contract broken:\n" + "\n".join(found)


def test_each_layer_has_modules() -> None:
    layers = {layer_of(module_name(f)) for f in package_files()}
    assert {r.layer for r in RULES} <= layers  # a renamed sub-package must not leave a rule checking nothing


@pytest.mark.parametrize(
    ("layer", "source", "broken"),
    [
        ("engine", "def f():\n    from openkws.keywords.store import KeywordStore\n", "engine imports only"),
        ("engine", "from ..server import app\n", "engine imports only"),
        ("text", "from openkws import kws\n", "text imports only"),
        ("training", "import openkws.server.app\n", "training never imports"),
        ("keywords", "if True:\n    import bench.streams_peers\n", "never imports bench"),
        ("keywords", "from openkws.engine.spotter import Spotter\n", None),
    ],
)
def test_the_checker_finds_function_level_relative_and_bench_imports(
    tmp_path: Path, layer: str, source: str, broken: str | None
) -> None:
    f = tmp_path / PACKAGE / layer / "probe.py"
    f.parent.mkdir(parents=True)
    f.write_text(source)
    found = violations([f], tmp_path)
    if broken is None:
        assert found == []
    else:
        assert len(found) == 1 and broken in found[0] and f"openkws.{layer}.probe" in found[0], found

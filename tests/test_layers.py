"""The package's layers, held by its own imports: every edge points down, none comes back.

``core ← config ← {remote, store, forecast} ← pipeline ← server ← cli``, with ``tools``
beside them (they may use any layer but ``cli``, and only ``cli`` uses them). Every
import counts, including those inside functions and under ``TYPE_CHECKING``: an import
moved into a function to dodge a cycle still leaves the cycle in the design.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "tsf_adapter"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# What each layer may import besides itself. The package root only holds __version__.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "config": frozenset({"core"}),
    "remote": frozenset({"core", "config", "_pb"}),
    "store": frozenset({"core", "config"}),
    "forecast": frozenset({"core", "config"}),
    "pipeline": frozenset({"core", "config", "remote", "store", "forecast"}),
    "server": frozenset({"core", "config", "remote", "store", "forecast", "pipeline"}),
    "tools": frozenset({"core", "config", "remote", "store", "forecast", "pipeline", "server", "_pb"}),
    "cli": frozenset({"core", "config", "remote", "store", "forecast", "pipeline", "server", "tools"}),
    "__main__": frozenset({"cli"}),
}
# Heavy or server-side libraries, and the only places that may import them.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("forecast.neural",),
    "aiohttp": ("remote", "pipeline", "server", "tools", "cli"),
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[0] == "_pb":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports, absolute, with its line (``from pkg import mod`` is ``pkg.mod``)."""
    is_package = path.name == "__init__.py"
    here = [PACKAGE, *name.split(".")] if name else [PACKAGE]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def layer(name: str) -> str:
    return name.split(".")[0] if name else ""


def is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (ROOT / rel).is_dir() or (ROOT / rel).with_suffix(".py").is_file()


def violations() -> Iterator[str]:
    for name, path in modules():
        own = layer(name)
        for imported, line in imports(name, path):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            top = imported.split(".")[0]
            if top in LIBRARIES and not any(
                name == place or name.startswith(place + ".") for place in LIBRARIES[top]
            ):
                yield f"{where}: {name} imports {top}, allowed only under {', '.join(LIBRARIES[top])}"
            if top != PACKAGE or imported == PACKAGE:
                continue
            target = imported.removeprefix(PACKAGE + ".")
            if target == "__version__" or not is_module(target):
                continue  # a name imported from a module, already checked as that module
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                yield f"{where}: {name} ({own}) imports {target} ({other}) against the layers"


def test_every_layer_is_known() -> None:
    assert {layer(name) for name, _ in modules() if name} <= set(ALLOWED)


def test_imports_point_down_the_layers() -> None:
    found = list(violations())
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tsf_adapter.store import store\n", "(config) imports store.store (store)"),
        ("def f():\n    import torch\n", "imports torch"),
        ("from ..pipeline import output\n", "(config) imports pipeline.output (pipeline)"),
    ],
)
def test_the_check_sees_edges_against_the_layers(
    source: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / PACKAGE
    (fake / "config").mkdir(parents=True)
    for package in ("store", "pipeline"):
        (fake / package).mkdir()
        (fake / package / "__init__.py").write_text("")
    (fake / "store" / "store.py").write_text("")
    (fake / "pipeline" / "output.py").write_text("")
    (fake / "config" / "__init__.py").write_text("")
    (fake / "config" / "sections.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    found = list(violations())
    assert any(expected in line for line in found), found

"""Each module imports on its own, first, in a fresh interpreter, with warnings as errors.

A cycle that only works in one import order, or a module that leans on another having
been imported before it, fails here for the module that shows it. The light layers are
also held to staying light: importing them must not load torch or aiohttp.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "tsf_adapter"
ROOT = Path(__file__).resolve().parent.parent


def _modules() -> list[str]:
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if "_pb" in rel.parts or rel.name == "__main__":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("module", _modules())
def test_module_imports_alone(module: str) -> None:
    done = _run(f"import {module}")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (["tsf_adapter.core.series", "tsf_adapter.core.grid", "tsf_adapter.config"], ["torch", "aiohttp"]),
        (["tsf_adapter.remote.codec"], ["torch", "aiohttp", "tsf_adapter.store", "tsf_adapter.forecast"]),
        (["tsf_adapter.store"], ["torch", "aiohttp", "tsf_adapter.forecast", "tsf_adapter.remote"]),
        (["tsf_adapter.forecast", "tsf_adapter.forecast.registry"], ["torch", "aiohttp"]),
    ],
)
def test_light_layers_stay_light(modules: list[str], absent: list[str]) -> None:
    code = "; ".join(
        [
            "import sys",
            *(f"import {m}" for m in modules),
            f"print([m for m in {absent!r} if m in sys.modules])",
        ]
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

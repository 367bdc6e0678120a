"""The offline vulnerability check of CI (``.ci/audit.py``): ranges, floors and the verdict."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = _audit()


@pytest.mark.parametrize(
    ("version", "hit"), [("3.8.4", True), ("3.8.5", False), ("2.13.0+cpu", True), ("0.1", True), ("9", False)]
)
def test_a_version_is_affected_from_introduced_up_to_fixed(version: str, hit: bool) -> None:
    ranges = [(Version("0"), Version("3.8.5"))]
    assert audit.affected(Version(version), ranges) is hit


def test_an_unfixed_range_affects_every_later_version() -> None:
    assert audit.affected(Version("99.0"), [(Version("1.0"), None)])


def test_the_lowest_version_a_requirement_admits() -> None:
    assert audit.lowest_allowed(Requirement("aiohttp>=3.10")) == Version("3.10")
    assert audit.lowest_allowed(Requirement("protobuf>=7.35.1,<8")) == Version("7.35.1")
    assert audit.lowest_allowed(Requirement("torch")) is None


def test_check_fails_on_an_installed_vulnerable_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = {
        "source": {"repository": "r", "commit": "c" * 40, "date": "2026-01-01", "made": "2026-01-02"},
        "packages": {"numpy": [{"id": "PYSEC-X", "aliases": ["CVE-Y"], "ranges": [["0", None]]}]},
    }
    path = tmp_path / "advisories.json"
    path.write_text(json.dumps(snapshot))
    monkeypatch.setattr(audit, "SNAPSHOT", path)
    assert audit.check() == 1
    err = capsys.readouterr().err
    assert "VULNERABLE: numpy" in err and "PYSEC-X (CVE-Y)" in err
    # numpy>=1.26 admits only affected versions here: the floor is reported too.
    assert "pyproject.toml admits numpy>=1.26 down to 1.26: PYSEC-X" in err


def test_the_recorded_snapshot_passes_for_this_install() -> None:
    assert audit.check() == 0

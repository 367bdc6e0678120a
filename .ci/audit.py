"""Known vulnerabilities in what the project installs, checked offline against a recorded snapshot.

    .venv/bin/python .ci/audit.py check                 # CI: exit 1 on any affected version
    .venv/bin/python .ci/audit.py update ADVISORY_DB    # refresh .ci/advisories.json

Vulnerability services (pip-audit's PyPI and OSV backends) cannot be reached from CI machines,
so the facts are kept in the repository: ``advisories.json`` holds, for every distribution
installed in ``.venv`` when it was made, each advisory's id, aliases and affected version ranges
(no descriptions), read from a checkout of the Python Packaging Authority's advisory database
(``github.com/pypa/advisory-database``, OSV format), whose commit and date it records.

``check`` fails when a distribution installed in ``.venv`` is at an affected version, or when a
requirement in ``pyproject.toml`` admits, at its lowest allowed version, a version that an
advisory affects (so a fresh install elsewhere cannot pick a vulnerable release). The snapshot is
only as new as its date: ``check`` prints it, and ``update`` against a newer checkout refreshes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / ".ci" / "advisories.json"

Range = tuple[Version, Version | None]  # [introduced, fixed): fixed None means not fixed


def installed() -> dict[str, Version]:
    """Every distribution importable here, by canonical name (unparseable versions left out)."""
    out: dict[str, Version] = {}
    for dist in metadata.distributions():
        try:
            out[canonicalize_name(dist.metadata["Name"])] = Version(dist.version)
        except (InvalidVersion, TypeError):
            continue
    return out


def requirements() -> list[Requirement]:
    """The project's requirements, its extras' included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def affected(version: Version, ranges: list[Range]) -> bool:
    # Local builds (torch's "+cpu") are the release they were built from.
    v = Version(version.public)
    return any(lo <= v and (hi is None or v < hi) for lo, hi in ranges)


def lowest_allowed(req: Requirement) -> Version | None:
    """The least version a requirement admits by its lower bound, if it has one."""
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    floors += [Version(s.version) for s in req.specifier if s.operator == ">"]
    return max(floors) if floors else None


def _ranges(advisory: dict[str, Any]) -> list[Range]:
    out: list[Range] = []
    for r in advisory["ranges"]:
        out.append((Version(r[0]), None if r[1] is None else Version(r[1])))
    return out


def check() -> int:
    snapshot = json.loads(SNAPSHOT.read_text())
    by_name: dict[str, list[dict[str, Any]]] = snapshot["packages"]
    have = installed()
    problems = []
    for name, version in sorted(have.items()):
        for adv in by_name.get(name, []):
            if affected(version, _ranges(adv)):
                problems.append(f"{name} {version} installed: {adv['id']} ({', '.join(adv['aliases'])})")
    for req in requirements():
        name = canonicalize_name(req.name)
        floor = lowest_allowed(req)
        for adv in by_name.get(name, []):
            if floor is not None and affected(floor, _ranges(adv)):
                problems.append(f"pyproject.toml admits {req} down to {floor}: {adv['id']}")
    checked = sum(1 for n in have if n in by_name)
    source = snapshot["source"]
    print(
        f"audit: {len(have)} installed distributions, {checked} with known advisories, checked against"
        f" {source['repository']} at {source['commit'][:12]} ({source['date']})"
    )
    for line in problems:
        print(f"audit: VULNERABLE: {line}", file=sys.stderr)
    return 1 if problems else 0


def update(database: Path) -> int:
    """Rewrite the snapshot from an advisory-database checkout, for what is installed here."""
    names = set(installed())
    packages: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((database / "vulns").glob("*/*.yaml")):
        name = canonicalize_name(path.parent.name)
        if name not in names:
            continue
        doc = yaml.safe_load(path.read_text())
        if doc.get("withdrawn"):
            continue
        ranges = []
        for part in doc.get("affected", []):
            for r in part.get("ranges", []):
                if r.get("type") != "ECOSYSTEM":
                    continue
                lo: str | None = None
                for event in r["events"]:
                    if "introduced" in event:
                        lo = event["introduced"]
                    elif "fixed" in event and lo is not None:
                        ranges.append([lo, event["fixed"]])
                        lo = None
                if lo is not None:
                    ranges.append([lo, None])
        if ranges:
            entry = {"id": doc["id"], "aliases": sorted(doc.get("aliases", [])), "ranges": ranges}
            packages.setdefault(name, []).append(entry)
    commit, date = _git(database, "log", "-1", "--format=%H %cI").split()
    snapshot = {
        "source": {
            "repository": "https://github.com/pypa/advisory-database",
            "commit": commit,
            "date": date,
            "made": datetime.now(UTC).date().isoformat(),
        },
        "packages": dict(sorted(packages.items())),
    }
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    count = sum(len(v) for v in packages.values())
    print(f"audit: {count} advisories of {len(packages)} installed distributions")
    return 0


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo / ".git") if (repo / ".git").exists() else str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 1:
        return check()
    if argv[:1] == ["update"] and len(argv) == 2:
        return update(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

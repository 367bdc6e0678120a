"""The dashboards in ``deploy/grafana`` as data: their queries, with the template variables filled in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def fill(expr: str, values: dict[str, str]) -> str:
    """``expr`` with ``$name`` and ``${name}`` replaced; an unknown variable is a ``KeyError``."""
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)

"""The ``/forecasts`` page: the latest outputs in Prometheus's text exposition format 0.0.4.

For ``output.mode: exposition``, where Prometheus scrapes the daemon instead of receiving
remote writes. The text comes from the same columns as the remote-write rows (the builder
makes each series' label set and exposition line together), so both outputs always carry the
same series and values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from tsf_adapter.pipeline.output.builder import ForecastOutput
from tsf_adapter.pipeline.output.naming import HELP

EXPOSITION_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_SPECIAL_VALUES: Final = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def _help(name: str) -> str:
    for suffix, text in HELP.items():
        if name.endswith(suffix):
            return text
    return "Forecast output."


def render_exposition(outputs: Iterable[ForecastOutput]) -> str:
    """Text exposition format 0.0.4 of the latest outputs (all targets), for ``/forecasts``.

    Every family appears once, with ``# HELP`` and ``# TYPE ... gauge``, even when several
    targets or input metrics feed it; there are no timestamps (Prometheus stamps the scrape).
    Paths are left out: the format has no place for future timestamps.
    """
    families: dict[str, list[str]] = {}
    for out in outputs:
        formatted = [_SPECIAL_VALUES.get(s, s) for s in map(repr, out.values.tolist())]
        for name, text, value in zip(out.names, out.texts, formatted, strict=True):
            rows = families.get(name)
            if rows is None:
                rows = families[name] = []
            rows.append(f"{text} {value}")
    lines: list[str] = []
    for name, rows in families.items():
        lines.append(f"# HELP {name} {_help(name)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(rows)
    return "\n".join(lines) + "\n" if lines else ""

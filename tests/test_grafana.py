"""The Grafana dashboards are well-formed: a datasource variable, and every query uses it and known variables.

That every query parses and returns data against a real Prometheus with the daemon's series is
checked by the end-to-end test (tests/integration/test_end_to_end.py, ``check_dashboards``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import grafana


@pytest.mark.parametrize("path", grafana.DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_reads_the_chosen_datasource_and_declared_variables(path: Path) -> None:
    dashboard = grafana.load(path)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    assert dashboard["uid"] == path.stem and dashboard["title"].startswith("tsf-adapter: ")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    builtins = {"__rate_interval": "1m", "__range_s": "3600"}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            # Every variable a query uses is declared (or one of Grafana's own).
            grafana.fill(target["expr"], {**dict.fromkeys(variables, "x"), **builtins})


def test_both_dashboards_are_there() -> None:
    assert [p.name for p in grafana.DASHBOARDS] == ["tsf-adapter-daemon.json", "tsf-adapter-forecasts.json"]

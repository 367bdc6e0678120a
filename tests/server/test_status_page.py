"""The status page in a real browser: Debian's chromium, driven by Playwright, against a running
daemon with data. The page must load with no console error, list the targets and the series
soonest to their threshold first, draw the chart of the first series, and draw another series'
chart when its row is clicked; the search box must filter the table.

``TSF_SCREENSHOT=path`` saves a screenshot of the page there (the README's picture is made so).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_daemon import Live, running

CHROMIUM = "/usr/bin/chromium"
# As root, and on a machine with no network: no sandbox, no GPU, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # only against a hang


def _chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium missing in CI: .ci/run must apt-get install chromium")
        pytest.skip("chromium not found (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running(tmp_path_factory.mktemp("page")) as daemon:
        yield daemon


@pytest.fixture
def page(live: Live, tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A fresh browser page and the console errors and page errors it reports."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            p = browser.new_page(viewport={"width": 1400, "height": 900})
            p.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            p.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            p.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            p.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
            yield p, problems
        finally:
            browser.close()


def test_the_page_shows_targets_series_and_the_chart_of_a_clicked_series(
    live: Live, page: tuple[Any, list[str]]
) -> None:
    p, problems = page
    p.goto(live.url + "/", wait_until="load")
    p.wait_for_selector("#targets tbody tr[data-target='load']", timeout=WAIT_MS)
    assert p.locator("#state").inner_text() == "ready"
    assert p.locator("#version").inner_text().startswith("v")
    targets = p.locator("#targets tbody tr")
    assert targets.count() == 2
    load = p.locator("#targets tbody tr[data-target='load']").inner_text()
    assert "lstm" in load and "none" in load  # its model, and no errors

    # The series, soonest to the threshold first: disk a, then c; b is beyond the horizon.
    p.wait_for_function("document.querySelectorAll('#series tbody tr').length === 5", timeout=WAIT_MS)
    names = [n.replace("\u200b", "") for n in p.locator("#series tbody tr td.name").all_inner_texts()]
    assert names[:3] == ['disk{job="j",mount="a"}', 'disk{job="j",mount="c"}', 'disk{job="j",mount="b"}']
    assert "beyond horizon" in p.locator("#series tbody tr").nth(2).inner_text()

    # The first series is drawn at once: history, median, band and threshold.
    p.wait_for_selector("#chart svg path.history", timeout=WAIT_MS)
    first = p.locator("#chart svg").get_attribute("data-series")
    assert p.locator("#chart-title").inner_text() == names[0]
    for part in ("path.history", "path.median", "path.band", "line.threshold"):
        d = p.locator(f"#chart svg {part}")
        assert d.count() == 1, part
    assert len(p.locator("#chart svg path.history").get_attribute("d") or "") > 100
    assert len(p.locator("#chart svg path.median").get_attribute("d") or "") > 100
    assert (p.locator("#chart svg path.band").get_attribute("d") or "").endswith("Z")

    # Clicking a load series draws its chart, with no threshold line (load has none).
    row = p.locator("#series tbody tr", has_text='instance="b"')
    row.click()
    p.wait_for_function(
        "(first) => { const s = document.querySelector('#chart svg');"
        " return s && s.dataset.series !== first; }",
        arg=first,
        timeout=WAIT_MS,
    )
    assert p.locator("#chart-title").inner_text() == 'load{instance="b",job="j"}'
    assert p.locator("#chart svg line.threshold").count() == 0
    assert len(p.locator("#chart svg path.history").get_attribute("d") or "") > 100
    assert "model lstm" in p.locator("#chart-facts").inner_text()
    assert "selected" in (row.get_attribute("class") or "")
    assert p.url.endswith("#series=" + (row.get_attribute("data-id") or "?"))

    # The headers sort: by name, then back to the soonest first.
    p.click("button.sort[data-sort='name']")
    p.wait_for_function(
        "document.querySelector('#series tbody tr td.name').textContent.startsWith('disk') &&"
        " document.querySelectorAll('#series tbody tr td.name')[1].textContent.includes('mount=\"b\"')",
        timeout=WAIT_MS,
    )
    assert p.locator("#sort-note").inner_text() == "by name"
    p.click("button.sort[data-sort='probability']")
    p.wait_for_function(
        "document.querySelector('#sort-note').textContent.startsWith('likeliest')", timeout=WAIT_MS
    )
    p.wait_for_function(
        "[...document.querySelectorAll('#series tbody tr')].slice(-2)"
        ".every((r) => r.textContent.includes('load'))",
        timeout=WAIT_MS,
    )
    p.click("button.sort[data-sort='time_to_threshold']")

    # Search narrows the table.
    p.fill("#search", 'mount="c"')
    p.wait_for_function("document.querySelectorAll('#series tbody tr').length === 1", timeout=WAIT_MS)
    assert (
        p.locator("#series tbody tr td.name").inner_text().replace("\u200b", "") == 'disk{job="j",mount="c"}'
    )
    p.fill("#search", "")
    p.wait_for_function("document.querySelectorAll('#series tbody tr').length === 5", timeout=WAIT_MS)

    # Axis and table numbers: storage sizes from bytes to petabytes, no digit lost.
    shown = p.evaluate("[1e14, 1.5e9, 120, 0.5, 73.6e12].map(tsfChart.formatValue)")
    assert shown == ["100T", "1.5G", "120", "0.5", "73.6T"]

    shot = os.environ.get("TSF_SCREENSHOT")
    if shot:
        p.locator("#series tbody tr").first.click()
        p.wait_for_selector("#chart svg line.threshold", state="attached", timeout=WAIT_MS)
        p.screenshot(path=shot, full_page=True)
    assert problems == []


def test_a_link_to_a_series_opens_its_chart(live: Live, page: tuple[Any, list[str]]) -> None:
    p, problems = page
    _, body = live.call("GET", "/api/v1/series?target=disk&sort=name")
    wanted = body["data"]["series"][1]  # mount b: not the first of the table
    p.goto(f"{live.url}/#series={wanted['id']}", wait_until="load")
    p.wait_for_selector(f"#chart svg[data-series='{wanted['id']}']", timeout=WAIT_MS)
    assert p.locator("#chart-title").inner_text() == wanted["name"]
    assert problems == []

"""Make ``docs/status-page.png``: the status page of ``tsf-adapter demo``, in Debian's chromium.

    .venv/bin/python docs/status_page_screenshot.py [--out docs/status-page.png]

Starts the demo (simulated storage cluster, no Prometheus needed) on a free port, waits until
the first trained model forecasts every series, opens the page, picks the series soonest to its
quota, and saves a screenshot. Needs ``apt-get install chromium`` and the dev extras (Playwright).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _models(url: str) -> set[str]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/series?limit=1000", timeout=5) as resp:
            body = json.loads(resp.read())
    except OSError:
        return set()
    return {row["model"] for row in body["data"]["series"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "status-page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as state:
        cmd = [
            sys.executable,
            "-m",
            "tsf_adapter",
            "demo",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            state,
        ]
        demo = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while _models(url) != {"lstm"}:
                if time.monotonic() > deadline or demo.poll() is not None:
                    print("the demo did not forecast with its trained model in time", file=sys.stderr)
                    return 1
                time.sleep(1)
            time.sleep(20)  # a few more forecasts, so the series' errors and the table settle
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url + "/", wait_until="load")
                page.wait_for_selector("#chart svg path.history", timeout=30_000)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            demo.terminate()
            demo.wait(60)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

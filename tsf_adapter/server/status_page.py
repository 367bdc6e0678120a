"""The status page at ``/``: an HTML page, its script and styles, served from the package.

The page reads everything from the REST API (:mod:`.api`), so it shows exactly what the API
answers, and the daemon renders nothing per request. Its chart is a small script of our own
(``static/chart.js``), not a library: the page works offline, behind a proxy, and under a
Content-Security-Policy that allows only the daemon's own scripts (no inline code anywhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "static"


def add_status_page(app: web.Application) -> None:
    """``GET /`` (the page) and ``GET /static/...`` (its files) on ``app``."""
    index = (STATIC_DIR / "index.html").read_bytes()

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type="text/html", charset="utf-8")

    app.router.add_get("/", page)
    app.router.add_static("/static", STATIC_DIR, show_index=False, follow_symlinks=False)

"""``/-/healthy`` and ``/-/ready``, the probe paths Prometheus itself serves.

Healthy means the process is up and answering. Ready means it has loaded what
it needs and is not stopping: a load balancer or Kubernetes stops sending
traffic before shutdown drains (Prometheus's ``SetReady(web.Stopping)``).
"""

from __future__ import annotations

from aiohttp import web

from tsf_adapter.core.lifecycle import Readiness


def add_health_routes(app: web.Application, state: Readiness) -> None:
    """Register the two probe endpoints on ``app``."""

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="tsf-adapter is Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        if state.stopping:
            return web.Response(status=503, text="tsf-adapter is stopping.\n")
        if not state.ready:
            return web.Response(status=503, text="tsf-adapter is not ready: starting.\n")
        return web.Response(text="tsf-adapter is Ready.\n")

    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)

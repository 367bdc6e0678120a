"""``host:port`` as Prometheus writes listen addresses; the one parser the config and the servers share."""

from __future__ import annotations


def split_host_port(address: str) -> tuple[str, int]:
    """``"0.0.0.0:9201"`` → ``("0.0.0.0", 9201)``; ``":9201"`` is every address; IPv6 goes in brackets.

    >>> split_host_port(":9201"), split_host_port("[::1]:80")
    (('0.0.0.0', 9201), ('::1', 80))
    >>> split_host_port("::1:80")
    Traceback (most recent call last):
    ...
    ValueError: IPv6 hosts go in brackets, e.g. [::1]:9201 (got '::1:80')
    """
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"must be host:port with a port from 0 to 65535, e.g. :9201 (got {address!r})")
    if host.startswith("["):
        if not host.endswith("]") or len(host) <= 2:
            raise ValueError(f"an IPv6 host in brackets needs its closing bracket (got {address!r})")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 hosts go in brackets, e.g. [::1]:9201 (got {address!r})")
    return host or "0.0.0.0", int(port)

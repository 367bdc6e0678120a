"""The part of a test daemon's config that every test writes alike: where it listens, reads and writes."""

from __future__ import annotations

from pathlib import Path


def connection_yaml(
    port: int, read_url: str, write_url: str, state: Path, *, read_api: str = "remote_read"
) -> str:
    """``server``, ``prometheus`` (remote-read SAMPLES, prompt remote-write) and ``state_dir``;
    a test appends its own ``output`` and ``targets``."""
    return f"""
server:
  listen_address: "127.0.0.1:{port}"
prometheus:
  remote_read:
    api: {read_api}
    url: "{read_url}"
    prefer_streamed: false
  remote_write:
    url: "{write_url}"
    queue:
      batch_send_deadline: 100ms
      flush_deadline: 10s
state_dir: "{state}"
"""

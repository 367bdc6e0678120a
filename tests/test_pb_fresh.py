"""The committed generated modules must equal what proto/generate.py makes now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="dev extra grpcio-tools regenerates the modules")
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted((tmp_path / "tsf_adapter" / "_pb").glob("*_pb2.py*"))
    assert fresh, "generator produced nothing"
    for path in fresh:
        committed = REPO / "tsf_adapter" / "_pb" / path.name
        assert committed.exists(), f"{committed} missing: run python proto/generate.py"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed.name} is stale: run python proto/generate.py and commit the result"
        )
    committed_names = {p.name for p in (REPO / "tsf_adapter" / "_pb").glob("*_pb2.py*")}
    assert committed_names == {p.name for p in fresh}


def test_generated_modules_import_from_the_package() -> None:
    from tsf_adapter._pb import remote_pb2, types_pb2, write_v2_pb2

    assert remote_pb2.WriteRequest.DESCRIPTOR.full_name == "prometheus.WriteRequest"
    assert write_v2_pb2.Request.DESCRIPTOR.full_name == "io.prometheus.write.v2.Request"
    assert types_pb2.Chunk.XOR == 1

"""Regenerate tsf_adapter/_pb from the .proto files in this folder.

Usage (from the repository root, with the dev extras installed)::

    python proto/generate.py            # rewrite tsf_adapter/_pb/*_pb2.py(i)
    python proto/generate.py --out DIR  # write DIR/tsf_adapter/_pb/... instead

The .proto files are mapped to the virtual path ``tsf_adapter/_pb`` so that
generated modules import each other as ``from tsf_adapter._pb import ...``
rather than as bare top-level modules. tests/test_pb_fresh.py runs this with
``--out`` into a temporary folder and fails if the committed modules differ.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO = PROTO_DIR.parent
PACKAGE_PATH = "tsf_adapter/_pb"
PROTOS = ("types.proto", "remote.proto", "write_v2.proto", "receive.proto")


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) with the mypy-protobuf plugin into ``out``."""
    from grpc_tools import protoc  # dev dependency, imported only when generating

    plugin = shutil.which("protoc-gen-mypy") or str(Path(sys.executable).parent / "protoc-gen-mypy")
    target = out / PACKAGE_PATH
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PACKAGE_PATH}={PROTO_DIR}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        *(f"{PACKAGE_PATH}/{name}" for name in PROTOS),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted(p for p in target.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="root to write tsf_adapter/_pb under")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))


if __name__ == "__main__":
    main()

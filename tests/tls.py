"""Real certificates for tests, made with the ``openssl`` command: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate the CA signed, and one from a CA nobody trusts.

Usage::

    certs = make_certificates(tmp_path)
    web_yaml = f"tls_server_config: {{cert_file: {certs.server_crt}, key_file: {certs.server_key}}}"

EC P-256 keys: generated in milliseconds, where RSA would take a second each.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificates:
    ca_crt: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    # Signed by a second CA, which the server does not trust.
    stranger_crt: Path
    stranger_key: Path


def make_certificates(directory: Path) -> Certificates:
    """Write every file into ``directory``; skips the test when ``openssl`` is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "stranger-ca")
    _leaf(directory, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _leaf(directory, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(directory, "stranger", "stranger-ca", "extendedKeyUsage=clientAuth")
    return Certificates(
        ca_crt=directory / "ca.crt",
        server_crt=directory / "server.crt",
        server_key=directory / "server.key",
        client_crt=directory / "client.crt",
        client_key=directory / "client.key",
        stranger_crt=directory / "stranger.crt",
        stranger_key=directory / "stranger.key",
    )


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl(
        directory,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        directory,
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-set_serial", str(int.from_bytes(name.encode()[:8], "big")), "-days", "2", "-out", f"{name}.crt",
        "-extfile", f"{name}.ext",
    )  # fmt: skip

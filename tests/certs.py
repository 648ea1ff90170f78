"""Test certificates made with the openssl command line: a CA and certificates it signs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def make_ca(directory: Path) -> Path:
    """A self-signed CA in ``directory`` (ca.crt, ca.key); skips the test when openssl is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    _openssl(
        directory,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    )
    return directory / "ca.crt"


def issue(
    directory: Path,
    name: str,
    common_name: str,
    *,
    ip_san: str | None = None,
    key_password: str | None = None,
) -> tuple[Path, Path]:
    """A certificate and key (``name``.crt / ``name``.key) signed by the CA in ``directory``."""
    key_args = ["-passout", f"pass:{key_password}"] if key_password else ["-nodes"]
    _openssl(
        directory,
        "req",
        "-newkey",
        "rsa:2048",
        *key_args,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={common_name}",
    )
    extra: list[str] = []
    if ip_san:
        (directory / f"{name}.ext").write_text(f"subjectAltName=IP:{ip_san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        directory,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "1",
        *extra,
    )
    return directory / f"{name}.crt", directory / f"{name}.key"

"""``podman --remote push`` and ``search --list-tags`` through ``kiln serve`` honour the
parameters podman 4's bindings send as they spell them (``compressionformat`` and
``listtags`` in lower case; ``tlsVerify``): the layers reach the registry in the
compression asked for, and a repository's tags are listed."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from api_server import start_server, stop_server
from kiln.cli.main import run
from kiln.oci import Reference
from kiln.oci import media_types as mt
from kiln.registry import RegistryClient, RegistryOptions
from registry_servers import registry_plain  # noqa: F401

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PODMAN = shutil.which("podman")
CALL_TIMEOUT = 120


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_podman_remote_push_compression_format_and_list_tags(
    tmp_path,
    registry_plain,  # noqa: F811
    busybox_rootfs_tar,
):
    assert run(["--root", str(tmp_path / "root"), "import", busybox_rootfs_tar, "bb:1"]) == 0
    proc, sock = start_server(tmp_path)
    try:
        ref = f"{registry_plain.host}/libpod-push/zst:1"
        r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", "push",
                            "--tls-verify=false", "--compression-format", "zstd",
                            "localhost/bb:1", ref],
                           capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
        assert r.returncode == 0, r.stderr
        r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", "search",
                            "--tls-verify=false", "--list-tags", ref.rsplit(":", 1)[0]],
                           capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
        assert r.returncode == 0, r.stderr
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        assert rows == [[ref.rsplit(":", 1)[0], "1"]], r.stdout
    finally:
        assert stop_server(proc) == 0
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        raw, _media_type, _ = client.get_manifest(Reference.parse(ref))
    layers = json.loads(raw)["layers"]
    assert [layer["mediaType"] for layer in layers] == [mt.OCI_LAYER_ZSTD], layers


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_a_push_is_quiet_unless_told_as_podmans(
    tmp_path,
    registry_plain,  # noqa: F811
    busybox_rootfs_tar,
):
    """podman 4.3's push answers a newline once pushed (quiet, its default since old
    clients read no stream) or a stream of lines with quiet=false; podman --remote push
    -q (quiet=true) and without (quiet=false) both work."""
    from api_server import request

    assert run(["--root", str(tmp_path / "root"), "import", busybox_rootfs_tar, "bb:1"]) == 0
    proc, sock = start_server(tmp_path)
    try:
        base = f"/v4.3.1/libpod/images/localhost%2Fbb:1/push?tlsVerify=false&destination={registry_plain.host}/quiet/bb"
        status, headers, body = request(sock, "POST", base + ":1")
        assert (status, headers["content-type"], body) == (
            200,
            "text/plain; charset=us-ascii",
            b"\n",
        )
        status, headers, body = request(sock, "POST", base + ":2&quiet=false")
        lines = [json.loads(line) for line in body.splitlines()]
        assert status == 200 and headers["content-type"] == "application/json", body
        assert lines and all("error" not in line for line in lines) and "stream" in lines[0]
        for flags in (["-q"], []):
            r = subprocess.run([PODMAN, "--remote", "--url", f"unix://{sock}", "push", *flags,
                                "--tls-verify=false", "localhost/bb:1",
                                f"{registry_plain.host}/quiet/bb:3"],
                               capture_output=True, text=True, timeout=CALL_TIMEOUT)  # fmt: skip
            assert r.returncode == 0, r.stderr
    finally:
        assert stop_server(proc) == 0
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        for tag in ("1", "2", "3"):
            client.get_manifest(Reference.parse(f"{registry_plain.host}/quiet/bb:{tag}"))

"""Ctrl-C on ``kiln pull`` and ``kiln push`` while the registry has stopped sending or
taking a blob's bytes mid-way (a stalled link: a proxy that holds the bytes): the command
ends at once with 130 and "Error: interrupted", as podman and skopeo do, leaves nothing
(no image, no lease, no staged layer, no scratch directory: ``kiln system check`` is
clean), and the same command works once the link is back.

Before, the blob workers sat in their socket read or write until the 60 s timeout while
the interrupted main thread waited for them, and a second Ctrl-C did not help either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile

import pytest

from slow_servers import StallingProxy

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
ENDS_WITHIN = 30  # seconds after the Ctrl-C (it takes well under one)
HOLD_AFTER = 4 << 20  # bytes of the blob that pass before the link stalls


class Kiln:
    def __init__(self, tmp, name: str):
        self.root, self.tmpdir = tmp / name / "root", tmp / name / "tmp"
        self.tmpdir.mkdir(parents=True)
        self.env = dict(os.environ, KILN_ROOT=str(self.root), TMPDIR=str(self.tmpdir),
                        KILN_RUNTIME_DIR=str(tmp / name / "run"))  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kiln.cli.main", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip

    def interrupted(
        self, proxy: StallingProxy, *args: str, signum: int = signal.SIGINT
    ) -> tuple[int, str]:
        """Run ``kiln args``, send ``signum`` (Ctrl-C) once the proxy holds the bytes; its
        exit code and stderr."""
        proc = subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        try:
            assert proxy.stalled.wait(120), "the transfer never reached the stall"
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=ENDS_WITHIN)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            pytest.fail(f"kiln {args[0]} still ran {ENDS_WITHIN} s after the signal")
        finally:
            proxy.release()
        return proc.returncode, err

    def left_nothing(self) -> None:
        check = self("system", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert os.listdir(self.tmpdir) == []


def random_image(kiln: Kiln, tmp, name: str) -> None:
    """``name``: one layer of 12 MiB of random bytes (it stays that big compressed)."""
    path = tmp / f"{name.replace(':', '-')}.tar"
    with tarfile.open(path, "w") as tar, open("/dev/urandom", "rb") as data:
        info = tarfile.TarInfo("random.bin")
        info.size = 12 << 20
        tar.addfile(info, data)
    assert kiln("import", str(path), name).returncode == 0


@pytest.mark.parametrize(
    ("signum", "message"),
    [(signal.SIGINT, "Error: interrupted"), (signal.SIGTERM, "Error: stopped by SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
@pytest.mark.xfail(
    strict=False,
    reason="known, under investigation: in full CI runs (not alone, not after its CI "
    "neighbours) a pull stalled mid-layer sometimes outlives its signal by 30 s",
)
def test_ctrl_c_ends_a_pull_stalled_mid_layer(tmp_path, registry_plain, signum, message):
    """SIGTERM (``timeout``, a cancelled CI job) too: it cleans up as Ctrl-C does and
    exits 143, where Python's default ended kiln on the spot (-15) and left the pull's
    staged layer, lease and scratch directory to the next command."""
    src, dst = Kiln(tmp_path, "src"), Kiln(tmp_path, "dst")
    random_image(src, tmp_path, "big:1")
    ref = f"{registry_plain.host}/interrupted/pull:1"
    assert src("push", "--tls-verify=false", "big:1", f"docker://{ref}").returncode == 0
    proxy = StallingProxy(registry_plain.host, down=HOLD_AFTER)
    try:
        code, err = dst.interrupted(proxy, "pull", "--tls-verify=false",
                                    f"{proxy.host}/interrupted/pull:1", signum=signum)  # fmt: skip
    finally:
        proxy.close()
    assert code == 128 + signum, err
    assert err.rstrip().endswith(message) and "Traceback" not in err, err
    assert dst("images", "-q").stdout.strip() == ""
    dst.left_nothing()
    again = dst("pull", "--tls-verify=false", ref)
    assert again.returncode == 0, again.stderr


def test_ctrl_c_ends_a_push_stalled_mid_blob(tmp_path, registry_plain):
    src = Kiln(tmp_path, "src")
    random_image(src, tmp_path, "big:1")
    proxy = StallingProxy(registry_plain.host, up=HOLD_AFTER)
    try:
        code, err = src.interrupted(proxy, "push", "--tls-verify=false", "big:1",
                                    f"docker://{proxy.host}/interrupted/push:1")  # fmt: skip
    finally:
        proxy.close()
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    src.left_nothing()
    ref = f"docker://{registry_plain.host}/interrupted/push:1"
    again = src("push", "--tls-verify=false", "big:1", ref)
    assert again.returncode == 0, again.stderr

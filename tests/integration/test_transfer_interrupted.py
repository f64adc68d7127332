"""Ctrl-C on ``kiln pull`` and ``kiln push`` while the registry has stopped sending or
taking a blob's bytes mid-way (a stalled link: a proxy that holds the bytes): the command
ends at once with 130 and "Error: interrupted", as podman and skopeo do, leaves nothing
(no image, no lease, no staged layer, no scratch directory: ``kiln system check`` is
clean), and the same command works once the link is back.

Before, the blob workers sat in their socket read or write until the 60 s timeout while
the interrupted main thread waited for them, and a second Ctrl-C did not help either."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable

import pytest

from file_server import serving
from slow_servers import SilentServer, StallingProxy

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
        self, proxy: StallingProxy, *args: str, signum: int = signal.SIGINT,
        wait_blocked: bool = False,
    ) -> tuple[int, str]:  # fmt: skip
        """Run ``kiln args``, send ``signum`` (Ctrl-C) once the proxy holds the bytes (with
        ``wait_blocked``, once kiln waits on the held link: it has read all that passed, or
        its upload has come to rest); its exit code and stderr."""

        def blocked() -> None:
            assert proxy.stalled.wait(120), "the transfer never reached the stall"
            if wait_blocked and proxy.down_held:  # kiln read all that came: it waits in a read
                assert proxy.wait_client_drained(60), "kiln never read what passed the link"
            elif wait_blocked:  # kiln's upload has come to rest: it waits in a write
                assert proxy.wait_upload_blocked(60), "kiln's upload never came to rest"

        try:
            return self.signalled(blocked, *args, signum=signum)
        finally:
            proxy.release()

    def signalled(
        self, blocked: Callable[[], None], *args: str, signum: int = signal.SIGINT
    ) -> tuple[int, str]:
        """Run ``kiln args``, send ``signum`` once ``blocked()`` returns (it waits until
        kiln waits on its peer); its exit code and stderr."""
        proc = subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        try:
            blocked()
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=ENDS_WITHIN)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            pytest.fail(f"kiln {args[0]} still ran {ENDS_WITHIN} s after the signal")
        finally:
            if proc.poll() is None:  # blocked() failed
                proc.kill()
                proc.communicate(timeout=30)
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
@pytest.mark.parametrize("wait_blocked", [False, True], ids=["mid-chunks", "in-read"])
def test_ctrl_c_ends_a_pull_stalled_mid_layer(
    tmp_path, registry_plain, signum, message, wait_blocked
):
    """SIGTERM (``timeout``, a cancelled CI job) too: it cleans up as Ctrl-C does and
    exits 143, where Python's default ended kiln on the spot (-15) and left the pull's
    staged layer, lease and scratch directory to the next command. ``in-read``: the signal
    comes once kiln has read every byte that passed, so its blob worker sits in a socket
    read the registry never answers (the read waits in slices under the pull's cancel
    flag); the worker stopped only at its next chunk, so the pull outlived the signal by
    the read timeout (60 s), as it did in loaded CI runs where the signal came late."""
    src, dst = Kiln(tmp_path, "src"), Kiln(tmp_path, "dst")
    random_image(src, tmp_path, "big:1")
    ref = f"{registry_plain.host}/interrupted/pull:1"
    assert src("push", "--tls-verify=false", "big:1", f"docker://{ref}").returncode == 0
    proxy = StallingProxy(registry_plain.host, down=HOLD_AFTER)
    try:
        code, err = dst.interrupted(proxy, "pull", "--tls-verify=false",
                                    f"{proxy.host}/interrupted/pull:1", signum=signum,
                                    wait_blocked=wait_blocked)  # fmt: skip
    finally:
        proxy.close()
    assert code == 128 + signum, err
    assert err.rstrip().endswith(message) and "Traceback" not in err, err
    assert dst("images", "-q").stdout.strip() == ""
    dst.left_nothing()
    again = dst("pull", "--tls-verify=false", ref)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("wait_blocked", [False, True], ids=["mid-chunks", "in-write"])
def test_ctrl_c_ends_a_push_stalled_mid_blob(tmp_path, registry_plain, wait_blocked):
    """``in-write``: the signal comes once kiln's upload has come to rest against the held
    link, its blob worker in a socket write (under the push's cancel flag, in slices): it
    stopped only at its next read of the blob, so the push outlived the signal by the
    write timeout (60 s)."""
    src = Kiln(tmp_path, "src")
    random_image(src, tmp_path, "big:1")
    proxy = StallingProxy(registry_plain.host, up=HOLD_AFTER)
    try:
        code, err = src.interrupted(proxy, "push", "--tls-verify=false", "big:1",
                                    f"docker://{proxy.host}/interrupted/push:1",
                                    wait_blocked=wait_blocked)  # fmt: skip
    finally:
        proxy.close()
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    src.left_nothing()
    ref = f"docker://{registry_plain.host}/interrupted/push:1"
    again = src("push", "--tls-verify=false", "big:1", ref)
    assert again.returncode == 0, again.stderr


def test_ctrl_c_ends_a_build_whose_parallel_stages_pull_from_a_stalled_registry(
    tmp_path, registry_plain
):
    """Two stages built at once (``--jobs 2``) pull their bases, and the registry stalls
    mid-blob: a Ctrl-C reaches the main thread only, and the stages' pulls (in the stage
    threads, their blob workers in a read of the held link) end with the build's cancel
    flag. They ran on to the read timeout."""
    src, dst = Kiln(tmp_path, "src"), Kiln(tmp_path, "dst")
    random_image(src, tmp_path, "big:1")
    random_image(src, tmp_path, "big:2")
    for tag in ("1", "2"):
        ref = f"docker://{registry_plain.host}/interrupted/stages:{tag}"
        assert src("push", "--tls-verify=false", f"big:{tag}", ref).returncode == 0
    proxy = StallingProxy(registry_plain.host, down=HOLD_AFTER)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {proxy.host}/interrupted/stages:1 AS one\n"
        f"FROM {proxy.host}/interrupted/stages:2 AS two\n"
        "FROM scratch\nCOPY --from=one /random.bin /1\nCOPY --from=two /random.bin /2\n"
    )
    try:
        code, err = dst.interrupted(proxy, "build", "--jobs", "2", "--tls-verify=false",
                                    str(context), wait_blocked=True)  # fmt: skip
    finally:
        proxy.close()
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    assert dst("images", "-q").stdout.strip() == ""
    dst.left_nothing()


def test_ctrl_c_ends_a_build_whose_parallel_stages_add_urls_from_a_stalled_server(tmp_path):
    """Two stages built at once ``ADD`` a URL each, and the web server stalls mid-body:
    the stage threads sat in urllib's socket read, which no flag reaches, so the
    interrupted build waited for them until the read timeout (120 s) and ended with
    their "timed out" (125) instead of 130. The download's connection is now shut down
    once the build's cancel flag is set."""
    www = tmp_path / "www"
    www.mkdir()
    for name in ("one", "two"):
        (www / name).write_bytes(os.urandom(12 << 20))
    kiln = Kiln(tmp_path, "kiln")
    context = tmp_path / "context"
    context.mkdir()
    with serving(www) as url:
        proxy = StallingProxy(url.removeprefix("http://"), down=HOLD_AFTER)
        (context / "Dockerfile").write_text(
            f"FROM scratch AS one\nADD http://{proxy.host}/one /one\n"
            f"FROM scratch AS two\nADD http://{proxy.host}/two /two\n"
            "FROM scratch\nCOPY --from=one /one /1\nCOPY --from=two /two /2\n"
        )
        try:
            code, err = kiln.interrupted(proxy, "build", "--jobs", "2", str(context),
                                         wait_blocked=True)  # fmt: skip
        finally:
            proxy.close()
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    assert kiln("images", "-q").stdout.strip() == ""
    kiln.left_nothing()


@pytest.mark.parametrize(
    ("signum", "message"),
    [(signal.SIGINT, "Error: interrupted"), (signal.SIGTERM, "Error: stopped by SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_ends_a_build_whose_parallel_stages_add_git_urls_that_never_answer(
    tmp_path, signum, message
):
    """Two stages built at once ``ADD`` a git URL each, from a git daemon that accepts and
    never answers: the stage threads waited for git (in a session of its own, out of the
    signal's reach) up to $KILN_GIT_TIMEOUT (600 s), and the git processes outlived a
    kiln killed meanwhile. git is now killed once the build's cancel flag is set."""
    kiln = Kiln(tmp_path, "kiln")
    server = SilentServer()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM scratch AS one\nADD git://{server.host}/one.git /one\n"
        f"FROM scratch AS two\nADD git://{server.host}/two.git /two\n"
        "FROM scratch\nCOPY --from=one /one /1\nCOPY --from=two /two /2\n"
    )

    def blocked() -> None:
        assert server.wait_asked(2, 120), "the two git clients never asked"

    try:
        code, err = kiln.signalled(blocked, "build", "--jobs", "2", str(context), signum=signum)
        assert server.wait_all_gone(30), "a git process outlived kiln"
    finally:
        server.close()
    assert code == 128 + signum, err
    assert err.rstrip().endswith(message) and "Traceback" not in err, err
    assert kiln("images", "-q").stdout.strip() == ""
    kiln.left_nothing()


def test_ctrl_c_ends_a_build_whose_parallel_stages_wait_on_a_credential_helper(
    tmp_path, registry_basic
):
    """Two stages built at once pull their bases from a registry that asks for a login,
    and the auth file's credential helper never exits (a keychain waiting to be
    unlocked): the stage threads waited for it up to its 60 s bound. The helper is now
    killed once the build's cancel flag is set, and none is left."""
    kiln = Kiln(tmp_path, "kiln")
    started = tmp_path / "started"
    started.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-locked"
    helper.write_text(f'#!/bin/sh\necho $$ > "{started}/$$"\nexec sleep 1000\n')
    helper.chmod(0o755)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"credHelpers": {registry_basic.host: "locked"}}))
    kiln.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {registry_basic.host}/interrupted/helper:1 AS one\n"
        f"FROM {registry_basic.host}/interrupted/helper:2 AS two\n"
        "FROM scratch\nCOPY --from=one /a /1\nCOPY --from=two /a /2\n"
    )

    def blocked() -> None:  # both helpers run: the stages wait for them
        end = time.monotonic() + 120
        while len(os.listdir(started)) < 2:
            assert time.monotonic() < end, "the stages never asked their credential helper"
            time.sleep(0.05)

    code, err = kiln.signalled(blocked, "build", "--jobs", "2", "--tls-verify=false",
                               "--authfile", str(auth), str(context))  # fmt: skip
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    for pid in os.listdir(started):
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), "a credential helper lives on"
    kiln.left_nothing()


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_ctrl_c_ends_a_build_whose_parallel_stages_wait_on_a_tls_handshake(tmp_path):
    """Two stages built at once pull their bases from a registry that accepts and never
    answers, over TLS: the stage threads sat in the TLS handshake, which no cancel flag
    reached (socket reads in slices come after it), until the connect timeout and its
    retries. The connection is now shut down once the build's cancel flag is set."""
    kiln = Kiln(tmp_path, "kiln")
    registry = SilentServer()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {registry.host}/silent/one:1 AS one\nFROM {registry.host}/silent/two:1 AS two\n"
        "FROM scratch\nCOPY --from=one /a /1\nCOPY --from=two /a /2\n"
    )

    def blocked() -> None:  # both ClientHellos are in: the stages wait for an answer
        assert registry.wait_asked(2, 120), "the stages never reached the registry"

    try:
        code, err = kiln.signalled(blocked, "build", "--jobs", "2", str(context))
        assert registry.wait_all_gone(30), "a connection to the registry outlived kiln"
    finally:
        registry.close()
    assert code == 130, err
    assert err.rstrip().endswith("Error: interrupted") and "Traceback" not in err, err
    kiln.left_nothing()

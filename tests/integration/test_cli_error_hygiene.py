"""Every ``kiln`` verb, given a typical user mistake, fails with exactly one clear line.

The installed console script runs as a subprocess against a store holding a
busybox image and one working container. For each mistake (an unknown image or
container, a bad reference, a missing file, a directory where a file belongs, a
bad flag value, an unreachable registry) the exit code is non-zero, stderr is a
single ``Error: ...`` line naming the problem, there is no traceback, and no
"unexpected <Exception>" (kiln's wording for a bug it did not foresee).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

pytest_plugins = ["fixtures_images"]

KILN = shutil.which("kiln")
pytestmark = [
    pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed"),
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="kiln from needs root here"),
]

UNREACHABLE = "127.0.0.1:1"
NO_IMAGE = ("no such image", "no such object", "not known", "not found", "unknown")
NO_CTR = ("no such container", "not known", "not found", "unknown")
BAD_REF = ("invalid", "reference", "lowercase", "uppercase")
MISSING = ("no such file", "no such directory", "not found", "does not exist", "missing")
A_DIR = ("directory",)
UNAVAILABLE = ("connect", "refused", "unavailable", "unreachable", UNREACHABLE)
FULL_DEVICE = ("writing /dev/full: no space left on device",)  # the output, not the store

# (verb args with {placeholders}, words one of which the Error: line must contain)
CASES: list = [
    (["images", "--format", "{{.Nope"], ("template", "format")),
    (["images", "--filter", "bogus=1"], ("filter",)),
    (["images", "--format", "{{.Nope}}"], ("can't evaluate field Nope",)),
    (["inspect", "nosuchimage"], NO_IMAGE),
    (["inspect", "--type", "nope", "busybox"], ("type",)),
    (["inspect", "--format", "{{.Nope", "busybox"], ("template", "format")),
    (["history", "nosuchimage"], NO_IMAGE),
    (["history", "--format", "{{.Nope", "busybox"], ("template", "format")),
    (["tag", "nosuchimage", "new:1"], NO_IMAGE),
    (["tag", "busybox", "Foo:bar"], BAD_REF),
    (["untag", "busybox", "other:9"], ("not", "no such")),
    (["untag", "nosuchimage"], NO_IMAGE),
    (["rmi", "nosuchimage"], NO_IMAGE),
    (["rmi", "Foo:bar"], (*BAD_REF, *NO_IMAGE)),
    (["image", "exists", "Foo:bar"], BAD_REF),
    (["image", "prune", "-f", "--filter", "bogus=1"], ("filter",)),
    (["image", "tree", "nosuchimage"], NO_IMAGE),
    (["image", "diff", "nosuchimage"], (*NO_IMAGE, *NO_CTR)),
    (["image", "diff", "--format", "{{.Path}}", "busybox"], ("'json'",)),  # podman's: only json
    (["diff", "--format", "table", "wc"], ("'json'",)),
    (["save", "-o", "{tmp}/out.tar", "nosuchimage"], NO_IMAGE),
    (["save", "--format", "nope", "-o", "{tmp}/out.tar", "busybox"], ("format", "nope")),
    (["save", "-o", "{dir}", "busybox"], A_DIR),
    (["save", "-o", "{tmp}/no/such/dir/out.tar", "busybox"], MISSING),
    (["save", "-o", "/dev/full", "busybox"], FULL_DEVICE),
    (["load", "-i", "{tmp}/missing.tar"], MISSING),
    (["load", "-i", "{dir}"], ("neither", "layout", "directory")),
    (["load", "-i", "{text}"], ("not a", "tar")),
    (["import", "{tmp}/missing.tar"], MISSING),
    (["import", "{dir}"], A_DIR),
    (["import", "{text}", "Foo:bar"], BAD_REF),
    (["import", "-c", "BOGUS x", "{rootfs}"], ("bogus", "instruction", "change")),
    (["push", "nosuchimage", f"{UNREACHABLE}/x/y:1"], NO_IMAGE),
    (["push", "busybox", f"docker://{UNREACHABLE}/x/y:1"], UNAVAILABLE),
    (["push", "busybox", "Foo:bar"], BAD_REF),
    (["pull", f"{UNREACHABLE}/x/y:1"], UNAVAILABLE),
    (["pull", "Foo:bar"], BAD_REF),
    (["pull", "oci-archive:{tmp}/missing.tar"], MISSING),
    (["pull", "oci-arhcive:{tmp}/x.tar"], ('unknown transport "oci-arhcive"',)),
    (["push", "busybox", "ocii:./layout"], ('unknown transport "ocii"',)),
    (["from", "--pull", "never", "nosuchimage"], NO_IMAGE),
    (["from", "Foo:bar"], BAD_REF),
    (["from", "--name", "wc", "--pull", "never", "busybox"], ("already", "in use", "exists")),
    (["run", "nosuchctr", "true"], NO_CTR),
    (["run", "busybox", "true"], ("kiln from busybox",)),  # podman's habit: run an image
    (["run", "--memory", "12q", "wc", "true"], ("memory", "12q", "size")),
    (["run", "--ulimit", "nofile=abc", "wc", "true"], ("ulimit", "abc")),
    (["run", "-v", "{tmp}/missing:/x", "wc", "true"], MISSING),
    (["run", "wc", "/no/such/binary"], ("no such", "not found", "executable")),
    (["run", "wc", "/etc"], ("permission denied",)),
    (["copy", "nosuchctr", "{text}", "/"], NO_CTR),
    (["copy", "wc", "{tmp}/missing", "/"], MISSING),
    (["copy", "--chown", "nosuchuser", "wc", "{text}", "/"], ("nosuchuser", "user")),
    (["copy", "--chmod", "99z", "wc", "{text}", "/"], ("chmod", "mode", "99z")),
    (["add", "wc", "{tmp}/missing", "/"], MISSING),
    (["add", "nosuchctr", "{text}", "/"], NO_CTR),
    (["config", "--healthcheck-interval", "abc", "wc"], ("interval", "duration", "abc")),
    (["config", "--stop-signal", "NOPE", "wc"], ("signal",)),
    (["config", "--cmd", "x", "nosuchctr"], NO_CTR),
    (["commit", "nosuchctr", "img:1"], NO_CTR),
    (["commit", "wc", "Foo:bar"], BAD_REF),
    (["commit", "--timestamp", "abc", "wc", "img:1"], ("timestamp", "abc")),
    (["commit", "--iidfile", "{dir}", "wc", "img:1"], A_DIR),
    (["containers", "--format", "{{.Nope}}"], ("can't evaluate field Nope",)),
    (["containers", "--filter", "nope=1"], ("invalid filter", "nope")),
    (["from", "--arch", "arm64", "--platform", "linux/arm64", "busybox"], ("--platform",)),
    (["from", "--cidfile", "{dir}", "busybox"], A_DIR),
    (["mount", "nosuchctr"], NO_CTR),
    (["umount", "nosuchctr"], NO_CTR),
    (["rename", "nosuchctr", "other"], NO_CTR),
    (["rename", "wc", ".."], ("'..'", "invalid")),
    (["rm", "nosuchctr"], NO_CTR),
    (["export", "nosuchctr"], NO_CTR),
    (["export", "-o", "{dir}", "wc"], A_DIR),
    (["export", "-o", "/dev/full", "wc"], FULL_DEVICE),
    (["diff", "nosuchctr"], (*NO_IMAGE, *NO_CTR)),
    (["login", "-u", "a", "-p", "b", UNREACHABLE], UNAVAILABLE),
    (["login", "-u", "a", UNREACHABLE], ("password",)),
    (["logout", UNREACHABLE], ("not logged in", "no credentials", UNREACHABLE)),
    (["search", f"{UNREACHABLE}/foo"], UNAVAILABLE),
    (["search", "--limit", "abc", "foo"], ("limit", "abc")),
    (["build", "-f", "{tmp}/missing.Containerfile", "{dir}"], MISSING),
    (["build", "{tmp}/nosuchdir"], (*MISSING, "not a directory")),
    (["build", "--timestamp", "abc", "{dir}"], ("timestamp", "abc")),
    (["build", "--memory", "12q", "{dir}"], ("memory", "12q", "size")),
    (["build", "--squash", "--squash-all", "{dir}"], ("--squash-all",)),  # refused by podman too
    (["serve", "-H", "tcp://nope:xx", "-t", "1"], ("address", "port", "host", "nope")),
    (["serve", "-H", "nope://x", "-t", "1"], ("nope://x", "address", "unix://")),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory, busybox_rootfs_tar):
    tmp = tmp_path_factory.mktemp("hygiene")
    (tmp / "adir").mkdir()
    (tmp / "text.txt").write_text("just text, not an archive\n" * 20)
    environ = dict(os.environ, KILN_ROOT=str(tmp / "root"), TMPDIR=str(tmp))
    environ.pop("KILN_DEBUG", None)
    environ["REGISTRY_AUTH_FILE"] = str(tmp / "auth.json")
    # the unreachable registry is retried: short waits (the message is tested, not the waits)
    environ["KILN_RETRY_DELAY"] = "50ms"
    subs = {
        "tmp": str(tmp),
        "dir": str(tmp / "adir"),
        "text": str(tmp / "text.txt"),
        "rootfs": busybox_rootfs_tar,
    }

    def kiln(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KILN, "--progress", "quiet", *(_fill(a, subs) for a in args)],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    for args in (("import", busybox_rootfs_tar, "busybox"), ("from", "--name", "wc", "busybox")):
        res = kiln(*args)
        assert res.returncode == 0, res.stderr
    return kiln


def _fill(arg: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def _id(case) -> str:
    return " ".join(case.values[0] if hasattr(case, "values") else case[0])


@pytest.mark.parametrize("args, words", CASES, ids=[_id(c) for c in CASES])
def test_user_mistake_gives_one_clear_error(env, args, words):
    res = env(*args)
    lines = res.stderr.splitlines()
    assert res.returncode != 0, f"accepted: {res.stdout!r}"
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"stderr: {res.stderr!r}"
    assert not re.search(r"unexpected [A-Z]\w+:", lines[0]), f"a bug: {lines[0]}"
    assert any(w.lower() in lines[0].lower() for w in words), f"{lines[0]!r} names none of {words}"


def test_the_store_survived(env):
    """None of the mistakes changed the store: one image, one container."""
    images = json.loads(env("images", "--format", "json").stdout)
    assert [i["Names"] for i in images] == [["localhost/busybox:latest"]]
    assert env("containers", "-q").stdout.count("\n") == 1

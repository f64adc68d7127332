"""How many modules a fresh ``kiln`` process imports for a short command: a budget per command.

Every module a command imports costs start-up CPU (a short build spends most of its CPU
there), so a lazy import that becomes eager — a package ``__init__`` importing everything, a
heavy library at the top of a module every build loads — must fail here, not show up
weeks later as a slower bench.

The child runs kiln's console entry point in an interpreter started with ``-S``: the
machine's ``site`` (``.pth`` files of other packages) imports modules that are neither
kiln's doing nor the same on every machine. The kiln modules are counted on their own
(exact: the same on every Python) and all modules with a little slack (the standard
library's own imports differ a little between Python releases). A budget is the count
when it was set plus that slack: lower it when a change imports less, raise it only in a
commit that says why the new modules are worth it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["fixtures_images"]

pytestmark = [pytest.mark.root]

# command -> (kiln modules, standard-library modules) when the budget was set. Other packages'
# modules are not counted: their number changes with their versions (NEVER names the heavy
# ones). The kiln counts were raised once, on purpose, for three modules that branches merged
# beside this test put on the build path: build.layer_first (COPY planning), util.lingering
# (the step threads kept across steps) and runtime.mountpoints; and once more, by one, for
# util.lazy_dataclass (each dataclass's methods compiled on first use, not at import). The
# standard-library counts went down by 7 to 9 when random ids stopped importing secrets
# (base64, hmac) and csv and urllib.parse were imported where they parse. Then a build stopped
# importing what only COPY/ADD, --mount, --ssh, heredocs, --output, caches, named contexts and
# pulls use, a cached one the working-container code, inspect the list transfer code, images
# tempfile and shutil (images: one kiln module more, util.lazy_pattern). Build and rebuild
# one more for util.spread (a store's snapshot directories placed away from recent deletions).
# Images and inspect: five fewer when logging was set up once something imports it (logging,
# traceback, string, _string, textwrap); inspect four kiln modules and two others fewer when it
# stopped loading the container code to look for a working container in a store that has none.
# Rebuild five fewer when the build checks stopped importing logging (they log only their own
# failure). Rebuild one more when the context's digest lines came to name the xattrs a COPY
# keeps (archive.changes' read_xattrs, for directories and files not in the index). Build and
# rebuild one more for util.cancel (the build runs under its cancel flag: a stage's pull that
# a registry stalls ends with the build).
# Build and rebuild one more for util.held_signals (a context's close finishes despite a Ctrl-C).
# Rebuild 11 standard-library modules and 5 kiln ones fewer, build two kiln ones fewer (157 to
# 155: it had grown by the slack, its count stays), inspect four and eight fewer, when a build
# stopped importing tempfile (the scratch directory is made with os.mkdir), subprocess (no
# killed RUN to stop), the gzip code (isal, gzip: imported when a stream is),
# kiln.image.import_tarball (a lazy export now) and, without a COPY, the COPY planning, xattr
# and tar entry code.
COUNTS = {
    "build": (154, 140),  # tiny: FROM busybox, ENV, RUN echo, CMD (a first build)
    "rebuild": (127, 118),  # the same build again: every step cached
    "images": (60, 103),
    "inspect": (71, 108),
}
KILN_SLACK = 3
STD_SLACK = 10
# never needed by these commands: each costs milliseconds (or tens of them) to import;
# secrets, csv and urllib are imported where a flag, a URL or a random token needs them; the
# COPY/ADD, --mount, --ssh, heredoc and parallel-stage code where a Dockerfile or flag asks;
# tarfile where a layer entry needs an extended header or a tar is read; ipaddress where
# --add-host or --dns is parsed; tarball import where a tarball is imported; COPY planning
# where a Dockerfile has a COPY
NEVER = ("httpx", "rich", "starlette", "uvicorn", "kiln.api", "kiln.registry.client",
         "zstandard", "importlib.resources", "secrets", "csv", "urllib", "tarfile",
         "concurrent.futures", "kiln.build.dispatch_copy", "kiln.container.copy_add",
         "kiln.container.git_source", "kiln.archive.applier", "kiln.build.heredoc",
         "kiln.build.mounts", "kiln.runtime.ssh_agent", "kiln.image.transports",
         "kiln.ops.manifest_transfer", "ipaddress", "kiln.image.import_tarball",
         "kiln.build.layer_first")  # fmt: skip
# and by one command: a listing of the store makes no scratch directory and removes nothing;
# a command that logs nothing does not import logging (configured once something imports it);
# inspect of an image in a store without working containers imports no container code; a fully
# cached build logs nothing (a RUN imports logging only to warn, e.g. of a vulnerable runc),
# makes no temporary directory but its scratch directory, imports subprocess only to stop a
# killed RUN and reads and writes no layer (gzip code, tar entries)
NEVER_IN = {
    "rebuild": ("logging", "tempfile", "random", "subprocess", "gzip", "isal",
                "kiln.archive.compression", "kiln.archive.entry"),
    "images": ("tempfile", "shutil", "logging"),
    "inspect": ("logging", "kiln.container", "kiln.ops.containers", "tempfile", "shutil"),
}  # fmt: skip

_CHILD = r"""
import atexit, sys
out, paths = sys.argv[1], sys.argv[2]
sys.path[:0] = [p for p in paths.split("\n") if p]
sys.argv = ["kiln", *sys.argv[3:]]

def dump():
    with open(out, "w") as f:
        f.write("\n".join(sorted(sys.modules)))

atexit.register(dump)  # runs at kiln's exit, also when it ends without the teardown
from kiln.cli.main import main
main()
"""

TINY = 'FROM bb:1\nENV GREETING=hello\nRUN echo "$GREETING" > /hello\nCMD ["/bin/sh"]\n'


def _modules(tmp_path, name: str, *args: str) -> list[str]:
    out = tmp_path / f"{name}.modules"
    done = subprocess.run(
        [sys.executable, "-S", "-c", _CHILD, str(out), "\n".join(sys.path), *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"kiln {' '.join(args)}: {done.stderr[-2000:]}"
    return out.read_text().split("\n")


@pytest.fixture(scope="module")
def counted(tmp_path_factory, busybox_rootfs_tar) -> dict[str, list[str]]:
    tmp = tmp_path_factory.mktemp("budget")
    root = str(tmp / "root")
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(TINY)
    _modules(tmp, "import", "--root", root, "import", "-q", busybox_rootfs_tar, "bb:1")
    build = ("--root", root, "build", "-q", "-t", "tiny:1", str(ctx))
    return {
        "build": _modules(tmp, "build", *build),
        "rebuild": _modules(tmp, "rebuild", *build),
        "images": _modules(tmp, "images", "--root", root, "images"),
        "inspect": _modules(tmp, "inspect", "--root", root, "inspect", "tiny:1"),
    }


@pytest.mark.parametrize("command", sorted(COUNTS))
def test_a_short_command_imports_no_more_modules_than_its_budget(counted, command):
    modules = counted[command]
    kiln = [m for m in modules if m == "kiln" or m.startswith("kiln.")]
    std = [m for m in modules if m.split(".")[0] in sys.stdlib_module_names]
    kiln_count, std_count = COUNTS[command]
    assert len(kiln) <= kiln_count + KILN_SLACK, f"{len(kiln)} kiln modules: {kiln}"
    assert len(std) <= std_count + STD_SLACK, f"{len(std)} standard-library modules: {std}"
    never = NEVER + NEVER_IN.get(command, ())
    unwanted = [m for m in modules if any(m == n or m.startswith(n + ".") for n in never)]
    assert not unwanted, f"kiln {command} imports {unwanted}"


def test_the_count_sees_what_a_command_imports(counted):
    """The child really ran kiln: a build imported its engine, ``images`` did not."""
    assert "kiln.build.executor" in counted["build"]
    assert "kiln.runtime.runc" in counted["build"]
    assert "kiln.build.executor" not in counted["images"]


# a registry pull of one image: neither the file transports (oci:, docker-archive:, ...) nor
# manifest lists (push, pull --all-platforms)
PULL_NEVER = ("kiln.image.transports", "kiln.ops.manifests", "kiln.ops.manifest_transfer",
              "kiln.build", "kiln.api")  # fmt: skip


def test_a_registry_pull_imports_no_file_transport_or_list_code(
    tmp_path, busybox_rootfs_tar, registry_plain
):
    src_root, root = str(tmp_path / "src"), str(tmp_path / "root")
    ref = f"{registry_plain.host}/module-budget/bb:1"
    _modules(tmp_path, "import", "--root", src_root, "import", "-q", busybox_rootfs_tar, "bb:1")
    _modules(tmp_path, "push", "--root", src_root, "push", "--tls-verify=false", "bb:1", ref)
    modules = _modules(tmp_path, "pull", "--root", root, "pull", "-q", "--tls-verify=false", ref)
    assert "kiln.image.unpack" in modules  # the child really pulled
    unwanted = [m for m in modules if any(m == n or m.startswith(n + ".") for n in PULL_NEVER)]
    assert not unwanted, f"kiln pull imports {unwanted}"

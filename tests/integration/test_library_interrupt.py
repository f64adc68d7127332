"""Ctrl-C in a script's ``kiln.build`` (a ``KeyboardInterrupt`` while a RUN runs, or while a
COPY writes its layer): once the call has raised, nothing of the build is left while the
script goes on (no mount, no running RUN, no working container, no lease, no scratch file),
and the same context builds again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import kiln
from fixtures_images import make_busybox_rootfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

# the script: Ctrl-C reaches the main thread once the build has got to ``when``
SCRIPT = r"""
import json, os, signal, subprocess, sys, threading, time
import kiln
from kiln.store import Store

root, rt, tmp, context, when, marker = sys.argv[1:]
def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # gone
        return b""
main = threading.main_thread().ident
def on(event):
    if when == "run" and event.kind == "output" and "started" in event.message:
        signal.pthread_kill(main, signal.SIGINT)
    if when == "copy" and event.kind == "step" and "COPY" in event.message:
        signal.pthread_kill(main, signal.SIGINT)
steps = {"run": f"RUN echo started; sleep 300 # {marker}\n", "copy": "COPY big /big\n"}
with kiln.open_context(root, events=kiln.CallbackSink(on)) as ctx:
    opts = kiln.BuildOptions(dockerfile_text="FROM busybox\n" + steps[when], context=context)
    try:
        kiln.build(ctx, opts)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    # a fresh store's overlay probe runs on the snapshotter's thread from the build's start
    # and unmounts on its own when it ends: waited for, as the interrupt soak waits
    probes = os.path.join(root, "snapshots", "tmp")
    deadline = time.monotonic() + 10
    while (os.path.isdir(probes) and any(n.startswith("probe-") for n in os.listdir(probes))
           and time.monotonic() < deadline):
        time.sleep(0.05)
    left = {
        "interrupted": interrupted,
        "mounts": [line.split()[4] for line in open("/proc/self/mountinfo")
                   if line.split()[4].startswith((root, rt, tmp))],
        "running": subprocess.run(["runc", "--root", os.path.join(rt, "runc"), "list", "-q"],
                                  capture_output=True, text=True).stdout.split(),
        "processes": [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
                      and marker.encode() in _cmdline(p)],
        "containers": [c.name for c in kiln.list_containers(ctx, all=True)],
        "leases": [lease.id for lease in ctx.store.leases.list_leases()],
        "scratch": [os.path.join(d, n) for d, dirs, files in os.walk(tmp) for n in dirs + files
                    if os.path.join(d, n) != ctx.tmpdir],  # the context's own: empty
    }
    kiln.build(ctx, kiln.BuildOptions(dockerfile_text="FROM busybox\nRUN true\n"))
print(json.dumps(left))
"""


@pytest.mark.parametrize("when", ["run", "copy"])
def test_ctrl_c_in_a_library_build_leaves_nothing_once_it_has_raised(tmp_path, when):
    root, rt, tmp, context = (str(tmp_path / d) for d in ("root", "rt", "tmp", "context"))
    for d in (tmp, context):
        os.mkdir(d)
    with open(os.path.join(context, "big"), "wb") as f:
        f.write(os.urandom(64 << 20))
    with kiln.open_context(root) as ctx:
        kiln.import_image(ctx, make_busybox_rootfs(str(tmp_path / "bb.tar")), "busybox")
    marker = f"kiln-test-{os.urandom(6).hex()}"
    src = os.path.dirname(os.path.dirname(kiln.__file__))
    env = dict(os.environ, KILN_RUNTIME_DIR=rt, TMPDIR=tmp, PYTHONPATH=src,
               KILN_RUNC_ADVISORY="ignore")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SCRIPT, root, rt, tmp, context, when, marker],
                          env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    left = json.loads(done.stdout.splitlines()[-1])
    assert left == {"interrupted": True, "mounts": [], "running": [], "processes": [],
                    "containers": [], "leases": [], "scratch": []}  # fmt: skip

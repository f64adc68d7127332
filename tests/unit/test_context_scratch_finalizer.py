"""A library user's context that is never closed leaves no scratch directory behind.

``kiln.Context`` makes its scratch directory (``kiln-scratch-<PID>...`` in ``$TMPDIR``) on
first use; ``close()`` removes it, and a context dropped without ``close()`` removes it
when it is garbage-collected or, if it lives that long, when the process exits. Each case
runs in a process of its own, which must leave nothing with the prefix for its PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# a docker-archive with no image: loading it needs the scratch directory (the archive is
# spooled there) and then fails as a user error; what is left behind is the point here
SCRIPT = textwrap.dedent("""
    import gc, io, os, sys, tarfile
    import kiln
    from kiln.store import Store

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"[]"))
    buf.seek(0)
    ctx = kiln.Context(store=Store.open(sys.argv[1]))
    try:
        kiln.load_images(ctx, buf)
    except kiln.KilnError:
        pass
    print(os.getpid(), ctx.tmpdir, os.path.isdir(ctx.tmpdir), flush=True)
    if sys.argv[2] == "drop":
        del ctx
        gc.collect()
        left = [n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("kiln-scratch-")]
        print("left while alive:", left, flush=True)
""")


@pytest.mark.parametrize("how", ["drop", "exit"])
def test_an_unclosed_context_leaves_no_scratch_dir(tmp_path, how):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "root"), how], env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    pid, path, made = res.stdout.splitlines()[0].split()
    assert made == "True" and os.path.dirname(path) == str(scratch)
    assert os.path.basename(path).startswith(f"kiln-scratch-{pid}.")
    if how == "drop":
        assert res.stdout.splitlines()[1] == "left while alive: []"
    assert [n for n in os.listdir(scratch) if n.startswith(f"kiln-scratch-{pid}.")] == []

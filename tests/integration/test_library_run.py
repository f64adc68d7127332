"""``kiln.run_in_container`` from a script: the environment, user, working directory and
standard streams of one run are keywords (a file or a descriptor takes the output), over
the image's config, for that run only."""

from __future__ import annotations

import io
import os
import select
import shutil
import threading
import time

import pytest

import kiln
from kiln.runtime import RunOptions

pytest_plugins = ["fixtures_images"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

SHOW = 'echo "$FROM_IMAGE $GIVEN $(id -un) $PWD"; echo oops >&2; exit 3'


def test_run_in_container_takes_env_user_workdir_and_streams(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    given, plain, err = tmp_path / "given", tmp_path / "plain", tmp_path / "err"
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        kiln.configure_container(ctx, box.name, kiln.ConfigSettings(env=["FROM_IMAGE=1"]))
        with open(given, "w") as stdout, open(err, "wb") as stderr:
            code = kiln.run_in_container(ctx, box.name, ["sh", "-c", SHOW], env=["GIVEN=2"],
                                         user="nobody", workdir="/tmp", stdout=stdout,
                                         stderr=stderr.fileno())  # fmt: skip
        with open(plain, "w") as stdout, open(os.devnull, "w") as stderr:
            kiln.run_in_container(ctx, box.name, ["sh", "-c", SHOW], stdout=stdout, stderr=stderr)
        kiln.remove_containers(ctx, [box.name])
    assert code == 3
    assert given.read_text() == "1 2 nobody /tmp\n"
    assert err.read_text() == "oops\n"
    assert plain.read_text() == "1  root /\n"


def test_in_memory_streams_take_and_give_a_runs_input_and_output(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """``io.BytesIO``/``io.StringIO`` have no descriptor (as a test runner's captured
    ``sys.stdout``): they were "runtime cannot be started: fileno"."""
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    out, err = io.BytesIO(), io.StringIO()
    big = b"x" * 300_000  # more than a pipe holds: input and output are copied as it runs
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        code = kiln.run_in_container(ctx, box.name, ["sh", "-c", "cat; echo é >&2; exit 2"],
                                     stdin=io.BytesIO(big), stdout=out, stderr=err)  # fmt: skip
        unread = kiln.run_in_container(ctx, box.name, ["true"], stdin=io.BytesIO(big))
        kiln.remove_containers(ctx, [box.name])
    assert (code, unread) == (2, 0)
    assert out.getvalue() == big
    assert err.getvalue() == "é\n"


class _FullDisk(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        raise OSError(28, "No space left on device")


class _Lines:
    """A stream of text that is no io.TextIOBase (a logger's, a GUI's)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


def test_a_stream_that_fails_raises_its_error_and_the_process_is_not_killed(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """A write that failed killed the copy thread: the process died of SIGPIPE (141
    returned) and the error was only printed by threading's hook."""
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    err, lines = io.BytesIO(), _Lines()
    script = "head -c 300000 /dev/zero; echo finished >&2"
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        with pytest.raises(OSError, match="No space left"):
            kiln.run_in_container(ctx, box.name, ["sh", "-c", script], stdout=_FullDisk(),
                                  stderr=err)  # fmt: skip
        code = kiln.run_in_container(ctx, box.name, ["echo", "hé"], stdout=lines)
        kiln.remove_containers(ctx, [box.name])
    assert err.getvalue() == b"finished\n"
    assert (code, "".join(lines.parts)) == (0, "hé\n")


def test_a_child_left_holding_the_output_does_not_hold_the_run(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """The copy waited for every holder of the pipe: a background child outside a PID
    namespace, or another chroot run's helper (forked with this run's pipes), held it."""
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    out = io.BytesIO()
    opts = RunOptions(args=[], isolation="chroot", pid="host")
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        started = time.monotonic()
        code = kiln.run_in_container(ctx, box.name, ["sh", "-c", "echo started; sleep 20 &"],
                                     opts, stdout=out)  # fmt: skip
        took = time.monotonic() - started
        kiln.remove_containers(ctx, [box.name])
    assert (code, out.getvalue()) == (0, b"started\n")
    assert took < 15


def test_a_chroot_run_holds_no_descriptor_of_another(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """A chroot run's helper is forked without exec: it held every pipe open in kiln, so
    another run's in-memory output waited for it to end."""
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    other_read, other_write = os.pipe()  # another run's pipe, open while this one starts
    running = threading.Event()
    opts = RunOptions(args=[], isolation="chroot", while_running=running.set)
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        run = threading.Thread(
            target=kiln.run_in_container, args=(ctx, box.name, ["sleep", "6"], opts)
        )
        run.start()
        try:
            assert running.wait(30)
            os.close(other_write)
            ended = select.select([other_read], [], [], 3)[0]
        finally:
            run.join()
            os.close(other_read)
        kiln.remove_containers(ctx, [box.name])
    assert ended

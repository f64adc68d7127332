"""Cancelling a build while a RUN is running: the process is stopped promptly and the
build leaves nothing behind (no image, working container, mount or runc container)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from api_server import busybox_sh_tar, dockerfile_context, start_server, stop_server
from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import Cancelled
from kiln.runtime import RunSettings
from mount_points import mount_points_under

pytestmark = ROOT_MARKS


def _runc_containers(state_dir: str) -> list[dict]:
    runc_root = os.path.join(state_dir, "runc")
    if not os.path.isdir(runc_root):
        return []
    out = subprocess.run(["runc", "--root", runc_root, "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out or "null") or []


@pytest.mark.parametrize("isolation", ["oci", "chroot"])
def test_cancel_stops_a_running_run(build_env, tmp_path, monkeypatch, isolation):  # noqa: F811
    state_dir = str(tmp_path / "runtime")
    monkeypatch.setenv("KILN_RUNTIME_DIR", state_dir)
    ctx = build_env.context_dir()
    cancel = threading.Event()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            build_env.build(ctx, "FROM busybox\nRUN echo started && sleep 60\nRUN touch /x\n",
                            tags=["cancelled"], cancel=cancel,
                            run=RunSettings(isolation=isolation))  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 30
    while "started" not in build_env.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "started" in build_env.output(), "the RUN never started"
    time.sleep(1)
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), Cancelled), outcome
    # the 2 s grace, then SIGKILL and clean-up (~2.5 s here): far from the RUN's 60 s
    assert outcome["ended"] - cancelled_at < 20
    store = build_env.store
    assert not any("cancelled" in n for rec in store.list_images() for n in rec.names)
    assert len(store.list_images()) == 1  # busybox only: no step was committed
    assert store.list_containers() == []
    assert mount_points_under(store.root) == []
    assert _runc_containers(state_dir) == []
    assert build_env.ctx.snapshots.list_active() == []


@pytest.fixture
def server(tmp_path):
    root, state_dir = str(tmp_path / "root"), str(tmp_path / "runtime")
    proc, path = start_server(tmp_path, env=dict(os.environ, KILN_RUNTIME_DIR=state_dir))
    yield path, root, state_dir
    assert stop_server(proc) == 0


def _request(path: str, method: str, target: str, body: bytes, ctype: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    head = (f"{method} {target} HTTP/1.1\r\nHost: d\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    s.sendall(head.encode() + body)
    return s


def test_api_client_disconnect_stops_a_running_run(server):
    from kiln.store import Store

    path, root, state_dir = server
    with _request(path, "POST", "/v1.41/images/create?fromSrc=-&repo=base&tag=1",
                  busybox_sh_tar(), "application/x-tar") as s:  # fmt: skip
        s.settimeout(30)
        reply = b""
        while b'"status"' not in reply and b'"error"' not in reply:
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk
        assert b" 200 " in reply.split(b"\r\n", 1)[0] and b'"error"' not in reply, reply
    dockerfile = "FROM base:1\nRUN echo started && /bin/busybox sleep 60\n"
    s = _request(path, "POST", "/v1.41/build?t=cancelled", dockerfile_context(dockerfile),
                 "application/x-tar")  # fmt: skip
    s.settimeout(30)
    seen = b""
    while b"started" not in seen:
        chunk = s.recv(65536)
        assert chunk, seen
        seen += chunk
    time.sleep(1)
    s.close()  # the client goes away: the build is cancelled
    closed_at = time.monotonic()
    store = Store.open(root)
    try:
        while time.monotonic() - closed_at < 20:  # ~2.5 s here: the grace, then SIGKILL
            if not _runc_containers(state_dir) and not store.list_containers():
                break
            time.sleep(0.1)
        assert _runc_containers(state_dir) == []
        assert store.list_containers() == []
        assert mount_points_under(root) == []
        assert not any("cancelled" in n for rec in store.list_images() for n in rec.names)
    finally:
        store.close()


def _cli_build(
    env_of, state_dir: str, *args: str, ignored: tuple[int, ...] = ()
) -> subprocess.Popen:
    """``kiln build ARGS`` on ``env_of``'s store as the console script runs it (its SIGINT is Python's, as under a
    terminal), with ``ignored`` signals ignored as ``nohup`` leaves them."""
    import sys

    def ignore() -> None:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)

    env = dict(os.environ, KILN_ROOT=env_of.store.root, KILN_RUNTIME_DIR=state_dir)
    return subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from kiln.cli.main import main; sys.exit(main())", "build", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore,
    )  # fmt: skip


def _signal_when(
    proc: subprocess.Popen, ready: Callable[[str], bool], signum: int, timeout: float
) -> tuple[list[str], str, str, float]:
    """Read ``proc``'s output until a line is ``ready``, send it ``signum`` and wait at most
    ``timeout`` s for its end (killed if it outlives the test): the lines read until then,
    the rest of its output, its error output, and the seconds from the signal to its end."""
    try:
        lines: list[str] = []
        while not lines or not ready(lines[-1]):
            lines.append(proc.stdout.readline())
            assert lines[-1], proc.stderr.read()
        proc.send_signal(signum)
        sent = time.monotonic()
        rest, err = proc.communicate(timeout=timeout)
        return lines, rest, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_started(line: str) -> bool:
    return line == "started\n"  # the RUN's own output (its STEP line names it too): it runs


@pytest.mark.parametrize("isolation", ["oci", "chroot"])
def test_a_build_under_nohup_goes_on_through_a_sighup(build_env, tmp_path, isolation):  # noqa: F811
    """``nohup kiln build``: the terminal's hang-up (SIGHUP, ignored) does not stop the build
    while a RUN runs, as it does not between steps. Before, the RUN's handlers took every
    SIGHUP as a stop (exit 129) and left the image unbuilt."""
    ctx = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo started && sleep 2\nRUN touch /x\n"}
    )
    proc = _cli_build(build_env, str(tmp_path / "runtime"), "--isolation", isolation,
                      "-t", "nohup", ctx, ignored=(signal.SIGHUP,))  # fmt: skip
    _, _, err, _ = _signal_when(proc, _run_started, signal.SIGHUP, 60)
    assert proc.returncode == 0, err
    assert any("nohup" in n for rec in build_env.store.list_images() for n in rec.names)


@pytest.mark.parametrize("isolation", ["oci", "chroot"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_sigint_stops_a_cli_build(build_env, tmp_path, isolation, signum):  # noqa: F811
    """Ctrl-C once stops `kiln build` during a RUN whose process ignores SIGINT (a
    container's PID 1 does), as buildah; it is not just proxied to the process. SIGTERM
    too, with podman's and buildah's exit code for it (143, where it was 130)."""

    state_dir = str(tmp_path / "runtime")
    ctx = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo started && sleep 60\nRUN touch /x\n"}
    )
    proc = _cli_build(build_env, state_dir, "--isolation", isolation, "-t", "cancelled", ctx)
    _, _, err, took = _signal_when(proc, _run_started, signum, 30)
    assert took < 20  # the grace and clean-up, not the RUN's 60 s
    assert proc.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1].startswith("Error:"), err
    store = build_env.store
    assert not any("cancelled" in n for rec in store.list_images() for n in rec.names)
    assert store.list_containers() == []
    assert mount_points_under(store.root) == []
    assert _runc_containers(state_dir) == []


def test_sigint_is_reported_as_cancelled_not_failed(build_env, tmp_path):  # noqa: F811
    """Ctrl-C is a cancel, as podman, buildah and BuildKit say it: the stopped step ends
    ``cancelled`` (the live view's summary reads 'Cancelled', not 'Failed at step 2'), the
    JSON stream ends with the ``interrupted`` error, the exit code is 130."""
    import signal

    from kiln.cli.build_view import BuildView
    from kiln.ops.events import Event

    ctx = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo started && sleep 60\nRUN touch /x\n"}
    )
    proc = _cli_build(build_env, str(tmp_path / "runtime"),
                      "--isolation", "chroot", "--progress", "json", ctx)  # fmt: skip
    lines, rest, err, _ = _signal_when(
        proc, lambda line: '"output"' in line and "started" in line, signal.SIGINT, 30
    )
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted", err
    events = [json.loads(line) for line in lines + rest.splitlines() if line.strip()]
    assert events[-1] == {"kind": "error", "message": "interrupted",
                          "data": {"type": "error", "exit_code": 130}}  # fmt: skip
    ends = [e["data"] for e in events if e.get("data", {}).get("type") == "step-end"]
    assert [(d["step"], d["state"]) for d in ends] == [(1, "done"), (2, "cancelled")], ends
    view = BuildView(out=io.StringIO(), err=io.StringIO(), width=80)
    for e in events[:-1]:
        view.emit(Event(e["kind"], e["message"], e.get("data", {})))
    view._closed = True  # only its summary, not drawn
    headline = str(view.summary(time.time())[0])
    assert headline.startswith("✖ Cancelled after"), headline


def test_a_second_ctrl_c_as_the_build_stops_still_removes_its_containers(
    build_env,  # noqa: F811
    monkeypatch,
):
    """A first Ctrl-C as a stage lets its working container go leaves it to the build's
    last clean-up; a second while the build then waits for its RUNs' output readers
    raised past that clean-up, and the container stayed with its snapshot. Both Ctrl-Cs
    are injected there: each window is a moment, too short to aim a real signal at."""
    from kiln.build import executor

    made = executor.Executor.__init__

    def ctrl_c_while_closing(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        close = self.pumps.close

        def close_then_ctrl_c(timeout: float | None = None) -> None:
            close(timeout)
            raise KeyboardInterrupt

        self.pumps.close = close_then_ctrl_c

    def ctrl_c(self, b) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(executor.Executor, "__init__", ctrl_c_while_closing)
    monkeypatch.setattr(executor.Executor, "release_builder", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        build_env.build(build_env.context_dir(), "FROM busybox\nRUN touch /x\n", tags=["second"])
    store = build_env.store
    assert store.list_containers() == []
    assert build_env.ctx.snapshots.list_active() == []
    assert mount_points_under(store.root) == []

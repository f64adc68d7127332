"""``--ssh`` and ``RUN --mount=type=ssh`` end to end: a real ssh-agent holding a generated
key, and the real ``ssh-add`` (with its libraries, copied into the image) asking it through
the forwarded socket inside the RUN step."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from dies_with_parent import dies_with_parent
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument, NotFound

pytestmark = [
    *ROOT_MARKS,
    pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="needs openssh-client"),
]

COMMENT = "kiln-ssh-test-key"


def _ssh_tools(ctx: Path) -> None:
    """ssh-add and the shared libraries it needs, under ``ctx/tools`` at their own paths."""
    out = subprocess.run(["ldd", shutil.which("ssh-add")], capture_output=True, text=True,
                         check=True, timeout=30).stdout  # fmt: skip
    files = [shutil.which("ssh-add")] + [w for w in out.split() if w.startswith("/")]
    for f in files:
        dest = ctx / "tools" / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(f), dest)


def _key(tmp_path: Path, name: str = "key", comment: str = COMMENT) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                   check=True, timeout=30)  # fmt: skip
    return key


@pytest.fixture
def agent(tmp_path):
    """A real ssh-agent of the test's own, holding one generated key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(dies_with_parent(["ssh-agent", "-D", "-a", str(sock)]),
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(_key(tmp_path))], env=env, check=True, timeout=30)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _ctx(build_env) -> str:  # noqa: F811
    ctx = build_env.context_dir()
    _ssh_tools(Path(ctx))
    return ctx


LIST_KEYS = """\
FROM busybox
COPY tools/ /
RUN --mount=type=ssh ssh-add -l > /keys; echo "sock=$SSH_AUTH_SOCK" > /env; \\
    stat -c %F:%a:%u:%g "$SSH_AUTH_SOCK" > /sockstat
"""


def test_default_forwards_ssh_auth_sock_into_the_run_only(build_env, agent, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    os.chmod(agent, 0o755)
    ctx = _ctx(build_env)
    build_env.build(ctx, LIST_KEYS, tags=["ssh1"], ssh=["default"])
    files = build_env.files("ssh1")
    assert COMMENT.encode() in files["keys"]
    assert files["env"] == b"sock=/run/buildkit/ssh_agent.0\n"
    assert files["sockstat"] == b"socket:600:0:0\n"
    # the socket is not in the image, nor the agent's path in history or config
    assert not any(n.startswith("run/buildkit/") for n in files)
    img = build_env.image("ssh1")
    text = json.dumps([h.to_json() for h in img.config.history]) + img.config.to_bytes().decode()
    assert str(agent) not in text and "SSH_AUTH_SOCK" not in img.config.config.env_dict()
    # the host's socket was not chmod'ed by the mount's mode: kiln relays through its own
    assert stat.S_IMODE(os.stat(agent).st_mode) == 0o755


def test_key_files_are_held_by_an_agent_of_the_build_then_killed(build_env, tmp_path):  # noqa: F811
    key = _key(tmp_path, "k2", "kiln-key-file")
    other = _key(tmp_path, "k3", "kiln-key-two")
    other.chmod(0o644)  # ssh-add alone refuses a key others can read; BuildKit takes it
    ctx = _ctx(build_env)
    before = _agents()
    build_env.build(
        ctx,
        "FROM busybox\nCOPY tools/ /\n"
        "RUN --mount=type=ssh,id=deploy,target=/tmp/agent,uid=1000,gid=2000,mode=0660,required \\\n"
        "    SSH_AUTH_SOCK=/tmp/agent ssh-add -l > /keys && stat -c %a:%u:%g /tmp/agent > /st\n",
        tags=["ssh2"], ssh=[f"deploy={key},{other}"],
    )  # fmt: skip
    files = build_env.files("ssh2")
    assert b"kiln-key-file" in files["keys"] and b"kiln-key-two" in files["keys"]
    assert files["st"] == b"660:1000:2000\n"
    body = key.read_bytes().splitlines()[2]  # a line of the private key's base64
    assert len(body) > 40 and body not in build_env.layer_bytes("ssh2")
    assert _agents() <= before  # the build's own agent is gone (others may end meanwhile)


def _agents() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"ssh-agent") and b"kiln-ssh-" in b" ".join(cmd):
                out.add(int(pid))
    return out


def test_a_socket_is_forwarded_and_the_cache_ignores_the_agent(build_env, agent, tmp_path):  # noqa: F811
    ctx = _ctx(build_env)
    text = "FROM busybox\nCOPY tools/ /\nRUN --mount=type=ssh,id=a ssh-add -l > /keys\n"
    first = build_env.build(ctx, text, tags=["ssh3"], ssh=[f"a={agent}"])
    assert COMMENT.encode() in build_env.files("ssh3")["keys"]
    # another agent, the same step: BuildKit keys on the mount, never on the agent
    again = build_env.build(ctx, text, tags=["ssh3b"], ssh=[f"a={_key(tmp_path, 'k4')}"])
    assert again.image_id == first.image_id


def test_required_without_ssh_fails_clearly_and_optional_runs_without(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(NotFound, match=r'ssh agent "default" is required.*--ssh default'):
        build_env.build(ctx, "FROM busybox\nRUN --mount=type=ssh,required=true true\n")
    build_env.build(
        ctx,
        "FROM busybox\nRUN --mount=type=ssh,id=nothere test ! -e $SSH_AUTH_SOCK && "
        "echo $SSH_AUTH_SOCK > /env\n",
        tags=["ssh4"],
    )
    assert build_env.files("ssh4")["env"] == b"/run/buildkit/ssh_agent.0\n"


def test_hostile_ids_and_targets(build_env, agent, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    ctx = build_env.context_dir()
    # an id naming a path is just an id no --ssh can give
    with pytest.raises(NotFound, match="required"):
        build_env.build(ctx, "FROM busybox\nRUN --mount=type=ssh,id=../../etc,required true\n",
                        ssh=["default"])  # fmt: skip
    with pytest.raises(InvalidArgument, match="id must be"):
        build_env.build(ctx, "FROM busybox\nRUN true\n", ssh=["../x=/tmp/y"])
    # a target that climbs out of the rootfs stays inside it
    victim = tmp_path / "victim"
    victim.mkdir()
    build_env.build(
        ctx,
        "FROM busybox\nRUN --mount=type=ssh,target=../../../../../../" + str(victim).lstrip("/")
        + "/sock test -S /" + str(victim).lstrip("/") + "/sock\n",
        ssh=["default"],
    )  # fmt: skip
    assert list(victim.iterdir()) == []
    # a symlink to the agent's socket is followed on the host (as ssh does); nothing of it
    # reaches the RUN but the relayed socket
    link = tmp_path / "link.sock"
    link.symlink_to(agent)
    ctx2 = _ctx(build_env)
    build_env.build(ctx2, "FROM busybox\nCOPY tools/ /\nRUN --mount=type=ssh ssh-add -l > /k\n",
                    tags=["ssh5"], ssh=[f"default={link}"])  # fmt: skip
    assert COMMENT.encode() in build_env.files("ssh5")["k"]
    # a symlink to something that is not a socket is a key file that does not load
    bogus = tmp_path / "bogus"
    bogus.symlink_to("/etc/hostname")
    with pytest.raises(InvalidArgument, match="cannot load"):
        build_env.build(ctx, "FROM busybox\nRUN true\n", ssh=[f"default={bogus}"])


def test_a_key_with_a_passphrase_is_refused_not_prompted(build_env, tmp_path):  # noqa: F811
    key = tmp_path / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", str(key)],
                   check=True, timeout=30)  # fmt: skip
    before = _agents()
    with pytest.raises(InvalidArgument, match="needs a passphrase"):
        build_env.build(build_env.context_dir(), "FROM busybox\nRUN true\n", ssh=[f"k={key}"])
    assert _agents() <= before  # no agent of its own left; others may end meanwhile

"""A throwaway unprivileged user that runs this checkout's kiln (rootless tests).

``make_user(subids=True)`` creates ``kilnrl<hex>`` with a home (``useradd -m``) and, with
``subids``, one 65536-id range in ``/etc/subuid`` and ``/etc/subgid`` (``useradd`` on Debian
adds one itself; without ``subids`` it is taken out again). ``remove_user`` deletes the user,
its home and its ranges; a user a killed test run left (its comment names the process that
made it, now dead) is removed, with its processes, by the next ``make_user``.
``UnprivilegedUser.kiln(*args)`` runs ``python -m kiln.cli.main`` as
that user with ``runuser``, with a timeout, in a clean environment (no ``KILN_ROOT``: the
store is the user's default, ``~/.local/share/kiln``).

The interpreter running the tests, or the checkout, may live where the user cannot go (pyenv
or a clone under ``/root``, mode 0700): then the command runs in a private mount namespace
where a tmpfs of mode 0711 covers that directory and only the entries on the way to them are
bound back into it; the user sees no other file of root's.

Shared by the rootless tests: ``CONTAINERFILE`` (RUN, COPY, a non-root ``USER`` with uid
``APP_UID``, a deletion) and ``layer_members(docker_archive)`` (every layer entry by path).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.util.process_owner import is_alive, this_process

SRC = str(Path(__file__).resolve().parents[1] / "src")
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
RANGE = 65536
PREFIX = "kilnrl"
COMMENT = "kiln test user of "  # + the making process (PID.START: no colon in a comment)


APP_UID = 1234
CONTAINERFILE = f"""\
FROM busybox:latest
RUN echo 'app:x:{APP_UID}:{APP_UID}::/home/app:/bin/sh' >> /etc/passwd \\
 && echo 'app:x:{APP_UID}:' >> /etc/group \\
 && mkdir -p /data /home/app /gone/sub && touch /gone/sub/a \\
 && chown {APP_UID}:{APP_UID} /data /home/app && echo root-made > /data/run.txt
RUN rm -rf /gone && mkdir /gone && touch /gone/new && rm /bin/ls
COPY --chown={APP_UID}:{APP_UID} hello.txt /data/hello.txt
COPY hello.txt /root-owned.txt
USER app
RUN id -u && echo user-made > /data/user.txt
CMD ["sh", "-c", "id -u; cat /data/user.txt; stat -c %u:%g /data/hello.txt /root-owned.txt"]
"""


def layer_members(archive: str) -> dict[str, tarfile.TarInfo]:
    """Every entry of every layer of a docker-archive (later layers win)."""
    members: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for m in inner.getmembers():
                    members[m.name.rstrip("/")] = m
    return members


def _without_lines_of(path: str, name: str) -> None:
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = [line for line in lines if line.split(":", 1)[0] != name]
    if kept != lines:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)


def subid_range(path: str, name: str) -> tuple[int, int] | None:
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] == name:
                return int(parts[1]), int(parts[2])
    return None


def free_subid_base() -> int:
    """A subordinate base no line of /etc/subuid or /etc/subgid uses yet."""
    top = 100000
    for path in (SUBUID, SUBGID):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    top = max(top, int(parts[1]) + int(parts[2]))
    return top


def _exposures(paths: list[str]) -> dict[str, list[str]]:
    """For each directory others cannot enter above one of ``paths``: its entries on the way."""
    out: dict[str, list[str]] = {}
    for path in paths:
        blocked = _blocked_ancestor(path)
        if blocked is not None:
            child = os.path.join(blocked, os.path.relpath(path, blocked).split(os.sep)[0])
            if child not in out.setdefault(blocked, []):
                out[blocked].append(child)
    return out


def _blocked_ancestor(path: str) -> str | None:
    """The top-most directory above ``path`` that others cannot enter, if any."""
    parts = Path(path).resolve().parts
    for i in range(2, len(parts)):
        d = os.path.join(*parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


@dataclass
class UnprivilegedUser:
    name: str
    uid: int
    gid: int
    home: str
    hold: str  # a root-only directory for the interpreter's bind (see module docstring)

    @property
    def store(self) -> str:
        return os.path.join(self.home, ".local", "share", "kiln")

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        base_env = {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": SRC,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if "KILN_RUNC_ADVISORY" in os.environ:  # tests/conftest.py
            base_env["KILN_RUNC_ADVISORY"] = os.environ["KILN_RUNC_ADVISORY"]
        base_env.update(env or {})
        inner = ["runuser", "-u", self.name, "--", "env", "-i"]
        inner += [f"{k}={v}" for k, v in base_env.items()] + argv
        exposed = _exposures([os.path.realpath(sys.base_prefix), SRC])
        if not exposed:
            return inner
        steps = []
        for i, (blocked, children) in enumerate(sorted(exposed.items())):
            holds = [os.path.join(self.hold, f"{i}-{j}") for j in range(len(children))]
            q = shlex.quote
            steps += [f"mkdir -p {q(h)} && mount --bind {q(c)} {q(h)}"
                      for c, h in zip(children, holds, strict=True)]  # fmt: skip
            steps.append(f"mount -t tmpfs -o mode=0711 kiln-test {q(blocked)}")
            steps += [f"mkdir -p {q(c)} && mount --bind {q(h)} {q(c)}"
                      for c, h in zip(children, holds, strict=True)]  # fmt: skip
        script = " && ".join([*steps, f"cd / && exec {shlex.join(inner)}"])
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]

    def run(
        self, argv: list[str], timeout: float = 300, env: dict[str, str] | None = None, **kw
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(argv, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def kiln(self, *args: str, timeout: float = 300, check: bool = True, env=None):
        proc = self.run([sys.executable, "-m", "kiln.cli.main", *args], timeout, env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kiln {' '.join(args)} as {self.name} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def give(self, path: str) -> None:
        """Hand ``path`` (under the home) to the user."""
        for root, dirs, files in os.walk(path):
            for n in [root, *(os.path.join(root, x) for x in dirs + files)]:
                os.lchown(n, self.uid, self.gid)


def skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    for tool in ("useradd", "userdel", "runuser", "unshare", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (uidmap, passwd, util-linux)")
    if not os.stat(SRC).st_mode & 0o005:
        pytest.skip("the checkout's src/ is not readable by other users")


def make_user(hold: str, subids: bool = True) -> UnprivilegedUser:
    skip_unless_possible()
    remove_dead_users()
    name = PREFIX + secrets.token_hex(4)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-u", str(_unused_uid()),
                    "-c", COMMENT + this_process().replace(":", "."), name],
                   check=True, timeout=60)  # fmt: skip
    for path in (SUBUID, SUBGID):
        if not os.path.exists(path):
            Path(path).touch(mode=0o644)
        if not subids:
            _without_lines_of(path, name)
        elif subid_range(path, name) is None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{name}:{free_subid_base()}:{RANGE}\n")
    import pwd

    pw = pwd.getpwnam(name)
    os.makedirs(hold, exist_ok=True)
    os.chmod(hold, 0o700)
    return UnprivilegedUser(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, hold)


def remove_user(user: UnprivilegedUser) -> None:
    # the store holds files of the user's subordinate ids: root removes them with the home
    subprocess.run(["userdel", "-r", "-f", user.name], capture_output=True, timeout=60)
    shutil.rmtree(user.home, ignore_errors=True)
    # the runtime dir a user without $XDG_RUNTIME_DIR gets (kiln.util.rootless.runtime_base)
    shutil.rmtree(os.path.join(tempfile.gettempdir(), f"kiln-run-{user.uid}"), ignore_errors=True)
    for path in (SUBUID, SUBGID):
        _without_lines_of(path, user.name)


def remove_dead_users() -> list[str]:
    """Remove the users (with their processes, homes and ranges) that test runs made and
    never removed, their making process being dead (a killed pytest); returns their names."""
    import pwd
    import signal

    removed = []
    for pw in pwd.getpwall():
        owner = pw.pw_gecos.removeprefix(COMMENT).replace(".", ":")
        if not pw.pw_name.startswith(PREFIX) or owner == pw.pw_gecos or is_alive(owner):
            continue
        for pid in _processes_of(pw.pw_uid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        remove_user(UnprivilegedUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, ""))
        removed.append(pw.pw_name)
    return removed


def _unused_uid() -> int:
    """A uid no account has and no process runs as: a sandbox may run processes under uids
    its /etc/passwd does not list, and removing a dead test user kills its uid's processes."""
    import pwd

    taken = {pw.pw_uid for pw in pwd.getpwall()}
    running = set()
    for entry in os.listdir("/proc"):
        try:
            running.add(os.stat(f"/proc/{entry}").st_uid)
        except OSError:
            continue
    uid = 20000
    while uid in taken or uid in running:
        uid += 1
    return uid


def _processes_of(uid: int) -> list[int]:
    """PIDs of the live processes whose real user is ``uid``. A zombie is not one: it runs
    nothing, and where PID 1 does not reap orphans (some CI sandboxes) a killed process whose
    parent is gone stays one for good."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry))
    return pids

"""``--ssh ID=KEY``: kiln starts its own ssh-agent and loads the key only once the agent
listens. The agent binds its socket before it listens, so the socket file alone is not
enough: on a busy machine ssh-add got "Connection refused" in between."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from kiln.runtime.ssh_agent import SshAgents, parse_ssh_specs

AGENT = shutil.which("ssh-agent")
pytestmark = pytest.mark.skipif(
    AGENT is None or shutil.which("ssh-add") is None or shutil.which("ssh-keygen") is None,
    reason="openssh-client is not installed",
)

# an ssh-agent that holds its socket bound but not listening for a while, as the real one
# does for a moment, then becomes the real agent on the same socket
SLOW_AGENT = """#!{python}
import os, socket, sys, time
path = sys.argv[sys.argv.index("-a") + 1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
time.sleep(1.0)
s.close()
os.unlink(path)
os.execv({agent!r}, [{agent!r}, *sys.argv[1:]])
"""


def test_the_key_is_loaded_once_the_agent_listens(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ssh-agent"
    fake.write_text(SLOW_AGENT.format(python=sys.executable, agent=AGENT))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, timeout=30)  # fmt: skip
    with SshAgents(parse_ssh_specs([f"k={key}"]), str(tmp_path)) as agents:
        listed = subprocess.run(
            ["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": agents.sockets["k"]},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "ED25519" in listed.stdout

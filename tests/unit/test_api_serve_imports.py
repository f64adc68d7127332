"""What ``kiln serve`` imports before it answers ``/_ping``: the API's routes and the image
store, not the build engine, the transports or the registry client. Those are most of
kiln's modules; the routes that run them import them on their worker threads, with the
first request that needs them (a server that only answers inspects never pulls). The
build engine alone loads by itself once the server listens, on a thread of its own, so
that the first build is as quick as the next."""

from __future__ import annotations

import json
import subprocess
import sys

from kiln.api import warm_up

# packages a server needs only for builds, pulls, pushes, saves, loads and checks
NOT_AT_START = (
    "kiln.build",
    "kiln.container",
    "kiln.transports",
    "kiln.snapshot",
    "kiln.archive",
    "kiln.image",
    "kiln.registry.client",
    "httpx",
    "dockerfile",
)

_CHILD = """
import sys
import kiln.api.server
print("\\n".join(sorted(sys.modules)))
"""


def test_serving_imports_no_build_transport_or_registry_module():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = done.stdout.split()
    assert "kiln.api.app" in loaded  # the child did import the server
    early = [m for m in loaded if m.startswith(NOT_AT_START)]
    assert not early, f"kiln serve imports at start: {early}"


# The child serves on a unix socket in its own event loop, with a finder that holds the
# import of the build engine until the child has pinged the server, so the order is sure
# whatever the machine's load: the engine's import starts without a request, on a thread
# that is not the loop's, once the socket answers; /_ping is answered while it waits.
_SERVE_CHILD = """
import asyncio, json, os, signal, socket, sys, threading
from kiln.api import warm_up
from kiln.api.server import serve_async
from kiln.ops.config import Config

root, sock_path = sys.argv[1], sys.argv[2]
ENGINE = "kiln.ops.build"
asked, release = threading.Event(), threading.Event()
seen = {}


def ping():
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(b"GET /_ping HTTP/1.1\\r\\nHost: d\\r\\nConnection: close\\r\\n\\r\\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")


class HoldEngine:
    def find_spec(self, name, path=None, target=None):
        if name == ENGINE and not asked.is_set():
            seen["thread"] = threading.current_thread().name
            seen["listening"] = ping()
            asked.set()
            release.wait(60)
        return None


sys.meta_path.insert(0, HoldEngine())


async def check():
    loop = asyncio.get_running_loop()
    seen["asked"] = await loop.run_in_executor(None, asked.wait, 60)
    seen["ping_while_held"] = await loop.run_in_executor(None, ping)
    seen["loaded_while_held"] = ENGINE in sys.modules
    release.set()
    os.kill(os.getpid(), signal.SIGTERM)


async def main():
    checker = asyncio.ensure_future(check())
    await serve_async(["unix://" + sock_path], Config(root=root, tmpdir=root))
    await checker


asyncio.run(main())
for t in threading.enumerate():
    if t.name == warm_up.THREAD_NAME:
        t.join(60)
seen["loaded_after"] = ENGINE in sys.modules
print(json.dumps(seen))
"""


def test_serve_answers_before_the_build_engine_loads_then_loads_it_unasked(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_CHILD, str(root), str(tmp_path / "api.sock")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["asked"], "the build engine did not start loading without a request"
    assert seen["listening"], "the build engine started loading before the server listened"
    assert seen["thread"] == warm_up.THREAD_NAME  # never the event loop's thread
    assert seen["ping_while_held"] and not seen["loaded_while_held"]
    assert seen["loaded_after"]

"""A client that hangs up during a call that is not streamed (a login, a registry lookup or
search, a manifest list made from a registry's image) cancels the call, as dockerd cancels
a request's context: the call lets go of the registry, its worker thread and its
connection at once. Before, the call waited on a registry that never answers until its
own deadline (a minute, or more with the lookup's retries), long after the client had
given up; only a stop of the server ended it.

The server stays whole: it answers the next request and logs no traceback."""

from __future__ import annotations

import json
import socket

import pytest

from api_server import request, start_server, stop_server
from slow_servers import SilentServer
from waits import WAIT_SECONDS

pytestmark = [pytest.mark.timeout(300)]

# the call lets go at once (well under a second here); the deadlines it beats are 60 s and more
LETS_GO_WITHIN = 20.0


def _calls(registry: str) -> dict[str, str]:
    """Each call's request, sent whole (its body too) before the client hangs up."""
    login = json.dumps({"username": "u", "password": "p", "serveraddress": registry})
    return {
        "login": "POST /v1.41/auth HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(login)}\r\n\r\n{login}",
        "distribution": f"GET /v1.41/distribution/{registry}/silent/x:1/json HTTP/1.1\r\n"
        "Host: kiln\r\n\r\n",
        "search": f"GET /v1.41/images/search?term={registry}/silent HTTP/1.1\r\nHost: kiln\r\n\r\n",
        "libpod-search": f"GET /v4.0.0/libpod/images/search?term={registry}/silent HTTP/1.1\r\n"
        "Host: kiln\r\n\r\n",
        "manifest-create": f"POST /v4.0.0/libpod/manifests/localhost/list:1?images={registry}"
        "/silent/x:1 HTTP/1.1\r\nHost: kiln\r\nContent-Length: 0\r\n\r\n",
    }


@pytest.mark.parametrize(
    "call", ["login", "distribution", "search", "libpod-search", "manifest-create"]
)
def test_a_call_waiting_on_a_silent_registry_ends_when_its_client_hangs_up(tmp_path, call):
    proc, sock = start_server(tmp_path)
    registry = SilentServer()
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(WAIT_SECONDS)
            client.connect(sock)
            client.sendall(_calls(registry.host)[call].encode())
            assert registry.wait_asked(1, WAIT_SECONDS), f"the {call} never reached the registry"
        assert registry.wait_all_gone(LETS_GO_WITHIN), (
            f"the {call} kept waiting on the registry after its client hung up"
        )
        status, _, body = request(sock, "GET", "/_ping", timeout=WAIT_SECONDS)
        assert (status, body) == (200, b"OK")
    finally:
        registry.close()
        assert stop_server(proc) == 0
    err = (tmp_path / "server.err").read_text()
    assert "Traceback" not in err, err


def test_a_client_that_stays_gets_its_answer(tmp_path):
    """The listener for the hang-up takes nothing a call needs: a call that reads its body
    (a tag list for a manifest list, JSON) and one that has none both answer as before."""
    proc, sock = start_server(tmp_path)
    try:
        status, _, body = request(sock, "POST", "/v4.0.0/libpod/manifests/localhost/list:1")
        assert status in (200, 201), body
        add = json.dumps({"images": ["localhost/none:1"]}).encode()
        status, _, body = request(sock, "POST", "/v4.0.0/libpod/manifests/localhost/list:1/add",
                                  body=add, headers={"Content-Type": "application/json"})  # fmt: skip
        # the body was read: the error names its image (no registry on localhost here)
        assert status >= 400 and b"localhost/none:1" in body, body
        status, _, body = request(sock, "GET", "/v4.0.0/libpod/manifests/localhost/list:1/exists")
        assert status == 204, body
    finally:
        assert stop_server(proc) == 0

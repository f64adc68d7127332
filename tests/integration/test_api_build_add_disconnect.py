"""A build through ``kiln serve`` whose ``ADD`` or remote context waits on a server that
never answers (a web server, a git daemon) ends when its client goes away: the request's
cancel flag shuts the download's connection down, or kills git. Before, the build kept
its thread, its connection and its git process until the download's header deadline
(120 s) or $KILN_GIT_TIMEOUT (600 s), long after docker build had given up."""

from __future__ import annotations

import socket

import pytest

from api_server import dockerfile_context, start_server, stop_server
from slow_servers import SilentServer

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

# the build lets go at once (well under a second here); the waits it beats are 120 s and more
LETS_GO_WITHIN = 30


@pytest.mark.parametrize("source", ["http", "git", "remote-context"])
def test_a_build_whose_add_waits_on_a_silent_server_ends_when_its_client_disconnects(
    tmp_path, source
):
    """``remote-context``: the build context itself is the silent server's URL."""
    proc, sock = start_server(tmp_path)
    peer = SilentServer()
    try:
        query, context = "", b""
        if source == "remote-context":
            query = f"&remote=http://{peer.host}/context.tar"
        else:
            dockerfile = f"FROM scratch\nADD {source}://{peer.host}/src /src\n"
            context = dockerfile_context(dockerfile)
        head = (
            f"POST /v1.41/build?t=gone:1{query} HTTP/1.1\r\nHost: kiln\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {len(context)}\r\n\r\n"
        )
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(sock)
            client.sendall(head.encode() + context)
            assert peer.wait_asked(1, 120), "the build never reached its ADD"
        assert peer.wait_all_gone(LETS_GO_WITHIN), (
            "the build kept waiting on its ADD's server after its client went away"
        )
    finally:
        peer.close()
        assert stop_server(proc) == 0
    err = (tmp_path / "server.err").read_text()
    assert "Traceback" not in err, err

"""Many idle clients do not lock others out of ``kiln serve`` (issue: hostile inputs,
slowloris): each connection is a file descriptor, and a server started at a soft limit
of 1024 open files (a common default) had none left after a thousand idle clients, so
the next client's connection waited unanswered until the head deadline freed some. The
server raises its soft limit to the hard one at start, as Go programs (dockerd) do."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from api_server import request, start_server, stop_server

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
SOFT = 256  # the server's soft limit when it starts
IDLE = 400  # more idle clients than that


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * IDLE:
        pytest.skip(f"the hard limit of open files ({hard}) is below {2 * IDLE}")
    if soft != resource.RLIM_INFINITY and soft < IDLE + 100:
        pytest.skip(f"this test's own soft limit of open files ({soft}) is too low")
    tmp = tmp_path_factory.mktemp("many-connections")
    # a head deadline far beyond the test's: only the limit decides whether others get in
    env = dict(os.environ, KILN_API_HEADER_SECONDS="3600")
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, hard))  # inherited by the server
    try:
        proc, sock = start_server(tmp, env=env)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield sock
    finally:
        assert stop_server(proc) == 0


def test_idle_clients_beyond_a_low_soft_limit_do_not_lock_others_out(server):
    idle = []
    try:
        for _ in range(IDLE):
            s = socket.socket(socket.AF_UNIX)
            s.connect(server)  # blocking: waits for room in the listen backlog
            idle.append(s)
        status, _, body = request(server, "GET", "/_ping", timeout=30)
        assert (status, body) == (200, b"OK")
        status, _, body = request(server, "GET", "/v1.41/images/json", timeout=30)
        assert (status, body) == (200, b"[]")
    finally:
        for s in idle:
            s.close()

"""podman's varlink image API (``io.podman``) from ``kiln serve --varlink unix:PATH``,
through the ``varlink`` package's own client and ``python3 -m varlink.cli``.

One server (HTTP beside varlink) serves the module; a plain registry
(Debian's docker-registry) takes the pushes. Every call has a socket timeout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from api_server import busybox_sh_tar, stop_server  # noqa: E402
from dies_with_parent import dies_with_parent  # noqa: E402
from slow_servers import SilentServer  # noqa: E402

varlink = pytest.importorskip("varlink")

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="builds with RUN need root"),
]
CALL_TIMEOUT = 60.0


@dataclass
class Server:
    proc: subprocess.Popen
    varlink_sock: str
    http_sock: str
    work: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry_plain, registry_schema1):
    work = tmp_path_factory.mktemp("varlink")
    conf = work / "registries.conf"
    conf.write_text(
        "unqualified-search-registries = []\n"
        f'[[registry]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
        f'[[registry]]\nlocation = "{registry_schema1.host}"\ninsecure = true\n'
    )
    env = {**os.environ, "KILN_REGISTRIES_CONF": str(conf),
           "CONTAINERS_REGISTRIES_CONF": str(conf), "XDG_RUNTIME_DIR": str(work / "run")}  # fmt: skip
    env.pop("REGISTRY_AUTH_FILE", None)
    vsock, hsock = str(work / "v.sock"), str(work / "http.sock")
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(work / "root"), "serve",
           "-H", f"unix://{hsock}", "--varlink", f"unix:{vsock}", "--access-log", ""]  # fmt: skip
    with open(work / "server.err", "wb") as err:
        proc = subprocess.Popen(dies_with_parent(cmd), stderr=err, env=env)
    deadline = time.monotonic() + 20
    while not (os.path.exists(vsock) and os.path.exists(hsock)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((work / "server.err").read_text())
        time.sleep(0.05)
    rootfs = work / "rootfs.tar"
    rootfs.write_bytes(busybox_sh_tar())
    srv = Server(proc, vsock, hsock, work)
    with podman(srv) as p:
        p.ImportImage(str(rootfs), "base:1", "from a tarball", ['CMD ["/bin/sh"]'], False)
    yield srv
    assert stop_server(proc) == 0, (work / "server.err").read_text()


@contextmanager
def podman(server: Server, timeout: float = CALL_TIMEOUT):
    """An ``io.podman`` client on its own connection; every read times out."""
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(timeout)
    conn.connect(server.varlink_sock)
    client = varlink.Client(address=f"unix:{server.varlink_sock}")
    with client.open("io.podman", connection=conn) as p:
        yield p


def error_of(exc: BaseException) -> tuple[str, dict]:
    assert isinstance(exc, varlink.VarlinkError), exc
    return exc.error(), exc.parameters()


def test_cli_info_lists_the_interface_and_describes_it(server):
    out = subprocess.run([sys.executable, "-m", "varlink.cli", "info", f"unix:{server.varlink_sock}"],
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert "io.podman" in out.stdout and "org.varlink.service" in out.stdout
    with podman(server) as p:
        conn = p._connection
        service = varlink.Client(address=f"unix:{server.varlink_sock}").open(
            "org.varlink.service", connection=conn
        )
        desc = service.GetInterfaceDescription("io.podman")["description"]
    for method in ("ListImages", "BuildImage", "PushImage", "PullImage", "ImageSave",
                   "LoadImage", "ContainerRunlabel", "GetLayersMapWithImageInfo"):  # fmt: skip
        assert f"method {method}(" in desc
    assert "error ImageNotFound" in desc


def test_list_get_inspect_history_tag_and_errors(server):
    with podman(server) as p:
        images = p.ListImages()["images"]
        [base] = [i for i in images if "localhost/base:1" in i["repoTags"]]
        assert len(base["id"]) == 64 and base["digest"].startswith("sha256:")
        assert base["size"] > 0 and base["topLayer"]
        assert p.GetImage("base:1")["image"]["id"] == base["id"]
        inspect = json.loads(p.InspectImage(base["id"][:12])["image"])
        assert inspect["Id"].removeprefix("sha256:") == base["id"]
        assert inspect["Config"]["Cmd"] == ["/bin/sh"]
        history = p.HistoryImage("base:1")["history"]
        assert history[0]["id"] == base["id"] and history[0]["comment"] == "from a tarball"
        assert p.ImageExists("base:1")["exists"] == 0
        assert p.ImageExists("nosuch:1")["exists"] == 1
        assert p.TagImage("base:1", "other:2")["image"] == base["id"]
        assert "localhost/other:2" in p.GetImage("other:2")["image"]["repoTags"]
        assert p.UntagImage(base["id"], "other:2")["image"] == base["id"]
        assert p.ImageExists("other:2")["exists"] == 1
        layers = json.loads(p.GetLayersMapWithImageInfo()["layerMap"])
        assert "localhost/base:1" in layers[base["topLayer"]]["RepoTags"]
        # parameters left out are their zero values, as podman's server read them
        for call in (lambda: p.GetImage("nosuch:1"), lambda: p.InspectImage("nosuch:1"),
                     lambda: p.RemoveImage("nosuch:1"), lambda: p.PushImage("nosuch:1")):  # fmt: skip
            with pytest.raises(varlink.VarlinkError) as err:
                call()
            name, params = error_of(err.value)
            assert name == "io.podman.ImageNotFound" and params["id"] == "nosuch:1"
        with pytest.raises(varlink.VarlinkError) as err:
            p.ContainerRunlabel({"image": "base:1", "label": "RUN"})
        assert error_of(err.value) == (
            "io.podman.ErrorOccurred",
            {"reason": "image base:1 has no RUN label"},
        )
        assert p.ListImages()["images"]  # the connection still serves after errors


def _build_info(context: str, output: str, **extra) -> dict:
    return {"contextDir": context, "dockerfiles": ["Dockerfile"], "output": output,
            "layers": True, **extra}  # fmt: skip


def test_build_streams_logs_with_more_and_fails_cleanly(server, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM base:1\nRUN echo hello-from-run && echo x > /made\nLABEL via=varlink\n"
    )
    with podman(server) as p:
        replies = list(p.BuildImage(_build_info(str(ctx), "built:1"), _more=True))
        assert len(replies) > 1
        assert all(r["image"]["id"] == "" for r in replies[:-1])
        logs = "".join(line for r in replies for line in r["image"]["logs"])
        assert "hello-from-run" in logs and "STEP" in logs
        built = replies[-1]["image"]["id"]
        assert p.GetImage("built:1")["image"]["id"] == built
        assert p.GetImage(built)["image"]["labels"] == {"via": "varlink"}
        # the RUN step's image is listed too, as podman's GetImages listed every image
        listed = {i["id"]: i for i in p.ListImages()["images"]}
        kept = p.ListImagesWithFilters(["intermediate=false"])["images"]
        intermediate = set(listed) - {i["id"] for i in kept}
        assert intermediate and built in listed and built not in intermediate
        assert all(listed[i]["repoTags"] == [] for i in intermediate)
        diffs = {d["path"]: d["changeType"] for d in p.Diff("built:1")["diffs"]}
        assert diffs.get("/made") == "A"
        # a tar of the context, without more: one reply with every line
        tar = tmp_path / "ctx.tar"
        with tarfile.open(tar, "w") as tf:
            tf.add(ctx / "Dockerfile", "Dockerfile")
        reply = p.BuildImage(_build_info(str(tar), "built:2"))["image"]
        assert reply["id"] == built and any("hello-from-run" in x or "cache" in x.lower()
                                            for x in reply["logs"])  # fmt: skip
        (ctx / "Dockerfile").write_text("FROM base:1\nRUN exit 3\n")
        with pytest.raises(varlink.VarlinkError) as err:
            list(p.BuildImage(_build_info(str(ctx), "broken:1"), _more=True))
        name, params = error_of(err.value)
        assert name == "io.podman.ErrorOccurred" and "exit" in params["reason"]
    with podman(server) as p:
        assert p.ImageExists("broken:1")["exists"] == 1


def test_push_pull_save_load_through_io_podman(server, registry_plain, tmp_path):
    dest = f"{registry_plain.host}/varlink/base:1"
    with podman(server) as p:
        base = p.GetImage("base:1")["image"]["id"]
        replies = list(p.PushImage("base:1", dest, False, "v2s2", False, "", _more=True))
        logs = "".join(x for r in replies for x in r["reply"]["logs"])
        assert "Writing manifest" in logs
        assert (
            replies[-1]["reply"]["id"] == base
        )  # podman's last reply names the image, not the manifest
        with pytest.raises(varlink.VarlinkError) as err:
            p.PushImage("base:1", dest, False, "", False, "me@example.com")
        name, params = error_of(err.value)
        assert name == "io.podman.ErrorOccurred" and "sign" in params["reason"]
        # the push's own format words, with the CLI's message
        with pytest.raises(varlink.VarlinkError) as err:
            p.PushImage("base:1", dest, False, "v2s3", False, "")
        name, params = error_of(err.value)
        assert name == "io.podman.ErrorOccurred"
        assert params["reason"] == 'format: unknown manifest format "v2s3": use oci, v2s2 or v2s1'
        # a registry that refuses schema 1 says so; the push is an error, not a success
        with pytest.raises(varlink.VarlinkError) as err:
            p.PushImage("base:1", dest, False, "v2s1", False, "")
        assert error_of(err.value)[0] == "io.podman.ErrorOccurred"
        # save two images into one archive, remove them, load them back
        p.TagImage("base:1", "second:1")
        archive = tmp_path / "two.tar"
        saved = p.ImageSave({"name": "base:1", "format": "docker-archive", "output": str(archive),
                             "moreTags": ["second:1"]})["reply"]  # fmt: skip
        assert saved["id"] == str(archive) and archive.stat().st_size > 0
        assert p.RemoveImage("second:1", False)["image"] == base
        loaded = p.LoadImage("", str(archive), False, False)["reply"]["id"]
        assert set(loaded.split(",")) == {"localhost/base:1", "localhost/second:1"}
        assert p.GetImage("second:1")["image"]["id"] == base
        # a bare export path is a docker archive; tags add names to it
        tagged = tmp_path / "tagged.tar"
        assert p.ExportImage("base:1", str(tagged), False, ["extra:3"])["image"] == base
        loaded = p.LoadImage("", str(tagged), True, True)["reply"]["id"]
        assert set(loaded.split(",")) == {"localhost/base:1", "localhost/extra:3"}
        assert not tagged.exists()  # deleteFile
        unnamed = tmp_path / "unnamed.oci.tar"
        p.ExportImage(base, f"oci-archive:{unnamed}", False, [])
        loaded = p.LoadImage("renamed:1", str(unnamed), False, False)["reply"]["id"]
        assert "localhost/renamed:1" in loaded.split(",")
        # pull back from the registry, and from a docker archive
        p.RemoveImage("second:1", False)
        pulled = list(p.PullImage(dest, {"username": "", "password": ""}, _more=True))
        assert pulled[-1]["reply"]["id"] == base
        assert dest in p.GetImage(base)["image"]["repoTags"]
        export = tmp_path / "export.tar"
        assert p.ExportImage("base:1", f"docker-archive:{export}", False, [])["image"] == base
        p.UntagImage(base, dest)
        p.UntagImage(base, "localhost/base:1")
        reply = p.PullImage(f"docker-archive:{export}", {"username": "", "password": ""})
        assert reply["reply"]["id"] == base
        assert "localhost/base:1" in p.GetImage(base)["image"]["repoTags"]
        with pytest.raises(varlink.VarlinkError) as err:
            p.PullImage(f"{registry_plain.host}/varlink/absent:1", {"username": "",
                                                                     "password": ""})  # fmt: skip
        assert error_of(err.value)[0] == "io.podman.ErrorOccurred"


def test_client_hanging_up_mid_build_cancels_it_and_the_server_goes_on(server, tmp_path):
    sleep = _unique_sleep(37)
    conn = _start_slow_build(server, tmp_path, sleep)
    with podman(server, timeout=10) as p:  # other clients are served meanwhile
        assert p.ImageExists("base:1")["exists"] == 0
    conn.close()
    deadline = time.monotonic() + 15
    while _running(sleep):
        assert time.monotonic() < deadline, "the RUN outlived its client"
        time.sleep(0.2)
    with podman(server, timeout=10) as p:
        assert p.ImageExists("slow:1")["exists"] == 1
        assert p.ListImages()["images"]
    # garbage on a connection closes that connection only
    with socket.socket(socket.AF_UNIX) as bad:
        bad.settimeout(10)
        bad.connect(server.varlink_sock)
        bad.sendall(b"not json\0")
        assert bad.recv(100) == b""
    with podman(server, timeout=10) as p:
        assert p.ImageExists("base:1")["exists"] == 0


def _unique_sleep(seconds: int) -> str:
    """``sleep N.XXXXXX``: a command line no other process on the machine has (another run
    of this suite included), so that ``_running`` finds this test's RUN only."""
    return f"sleep {seconds}.{secrets.randbelow(10**6):06d}"


def _running(pattern: str) -> bool:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, timeout=10)
    return any(pid and int(pid) != os.getpid() for pid in out.stdout.split())


def test_commit_import_prune_and_search(server, registry_plain, tmp_path):
    kiln = [sys.executable, "-m", "kiln.cli.main", "--root", str(server.work / "root")]
    subprocess.run([*kiln, "from", "--name", "wc", "base:1"], check=True, timeout=60,
                   capture_output=True)  # fmt: skip
    with podman(server) as p:
        reply = p.Commit("wc", "committed:1", ['CMD ["/bin/echo", "hi"]'], "Ann <a@x>",
                         "made over varlink", True, "docker")["reply"]  # fmt: skip
        inspect = json.loads(p.InspectImage("committed:1")["image"])
        assert inspect["Id"].removeprefix("sha256:") == reply["id"]
        assert inspect["Author"] == "Ann <a@x>" and inspect["Comment"] == "made over varlink"
        assert inspect["Config"]["Cmd"] == ["/bin/echo", "hi"]
        with pytest.raises(varlink.VarlinkError) as err:
            p.Commit("nosuch", "x:1", [], "", "", False, "")
        assert error_of(err.value)[0] == "io.podman.ContainerNotFound"
        assert p.Diff("wc") == {"diffs": []}  # a working container against its image
        with pytest.raises(varlink.VarlinkError) as err:
            p.Diff("nosuch")
        assert error_of(err.value)[0] == "io.podman.ErrorOccurred"  # podman's GetDiff error
        # an unnamed import is dangling: ImagesPrune takes it, and only it
        rootfs = tmp_path / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tf:  # a layer no other image has
            tf.add(__file__, "etc/only-here")
        dangling = p.ImportImage(str(rootfs), "", "dangling", [], True)["image"]
        assert not rootfs.exists()  # delete: the tarball is gone
        assert p.ImagesPrune(False, [])["pruned"] == [dangling]
        assert p.ImageExists(dangling)["exists"] == 1 and p.ImageExists("base:1")["exists"] == 0
        # search: the registry's catalog
        p.PushImage("base:1", f"{registry_plain.host}/varlink/found:1", False, "oci", False, "")
        found = p.SearchImages(f"{registry_plain.host}/varlink/found", 5, {"star_count": 0})
        names = [r["name"] for r in found["results"]]
        assert any(n.endswith("varlink/found") for n in names), found


def test_varlink_alone_and_http_beside(server, tmp_path):
    with socket.socket(socket.AF_UNIX) as http:  # the HTTP API served beside varlink
        http.settimeout(10)
        http.connect(server.http_sock)
        http.sendall(b"GET /_ping HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n")
        assert http.recv(4096).startswith(b"HTTP/1.1 200")
    sock = str(tmp_path / "alone.sock")
    cmd = [sys.executable, "-m", "kiln.cli.main", "--root", str(tmp_path / "root"), "serve",
           "--varlink", f"unix://{sock}"]  # fmt: skip
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(dies_with_parent(cmd), stderr=err)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "err"
            ).read_text()
            time.sleep(0.05)
        alone = Server(proc, sock, "", tmp_path)
        with podman(alone, timeout=10) as p:
            assert p.ListImages() == {"images": []}
            rootfs = tmp_path / "rootfs.tar"
            rootfs.write_bytes(busybox_sh_tar())
            p.ImportImage(str(rootfs), "base:1", "", [], False)
        log = (tmp_path / "err").read_text()
        assert "varlink API (io.podman) listening" in log and "kiln API listening" not in log
        # stopping the server ends a build in flight: its client gets an error, the RUN goes
        sleep = _unique_sleep(41)
        conn = _start_slow_build(alone, tmp_path, sleep)
        proc.send_signal(signal.SIGTERM)
        reply = _read_until_eof(conn)
        assert b"io.podman.ErrorOccurred" in reply and b"shutting down" in reply, reply
        assert proc.wait(timeout=30) == 0
        assert not _running(sleep)
    finally:
        if proc.poll() is None:
            assert stop_server(proc) == 0
    assert not os.path.exists(sock)


def _start_slow_build(server: Server, tmp_path: Path, sleep: str) -> socket.socket:
    """A BuildImage call (with more) whose RUN is running when this returns."""
    ctx = tmp_path / "slow-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM base:1\nRUN echo run-is-$((6*7)) && {sleep}\n")
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(CALL_TIMEOUT)
    conn.connect(server.varlink_sock)
    call = {"method": "io.podman.BuildImage", "more": True,
            "parameters": {"build": _build_info(str(ctx), "slow:1")}}  # fmt: skip
    conn.sendall(json.dumps(call).encode() + b"\0")
    seen = b""
    while b"run-is-42" not in seen:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection before the RUN started"
        seen += chunk
    deadline = time.monotonic() + 10
    while not _running(sleep):
        assert time.monotonic() < deadline, "the RUN never started"
        time.sleep(0.1)
    return conn


def _read_until_eof(conn: socket.socket) -> bytes:
    data = b""
    with conn:
        while chunk := conn.recv(65536):
            data += chunk
            if data.endswith(b"\0") and b'"error"' in data:
                break
    return data


def test_push_v2s1_through_io_podman_and_pull_it_back(server, registry_schema1):
    dest = f"{registry_schema1.host}/varlink/s1:1"
    with podman(server) as p:
        before = json.loads(p.InspectImage("base:1")["image"])
        replies = list(p.PushImage("base:1", dest, False, "v2s1", False, "", _more=True))
        assert replies[-1]["reply"]["id"] == before["Id"].removeprefix("sha256:")
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              f"docker://{dest}"], capture_output=True, check=True,
                             timeout=CALL_TIMEOUT).stdout  # fmt: skip
        doc = json.loads(raw)
        assert doc["schemaVersion"] == 1 and doc["signatures"][0]["header"]["alg"] == "ES256"
        pulled = list(p.PullImage(dest, {"username": "", "password": ""}, _more=True))
        image_id = pulled[-1]["reply"]["id"]
        after = json.loads(p.InspectImage(image_id)["image"])
    assert after["RootFS"] == before["RootFS"]
    assert after["Config"]["Cmd"] == before["Config"]["Cmd"] == ["/bin/sh"]
    assert [h.get("created_by") for h in after["History"]] == [
        h.get("created_by") for h in before["History"]
    ]


def raw_call(conn: socket.socket, call: dict) -> dict:
    """One call as the wire carries it (the ``varlink`` client reshapes bad values itself)."""
    conn.sendall(json.dumps(call).encode() + b"\0")
    buf = b""
    while not buf.endswith(b"\0"):
        data = conn.recv(1 << 16)
        assert data, f"the server closed the connection after {call}"
        buf += data
    return json.loads(buf[:-1])


def test_values_of_the_wrong_type_are_invalid_parameter_and_the_connection_goes_on(
    server, tmp_path
):
    hostile = [  # (method, parameters, the parameter named in the reply)
        ("ListImagesWithFilters", {"filters": "reference=base"}, "filters"),
        ("BuildImage", {"build": "/ctx"}, "build"),
        ("BuildImage", {"build": {"contextDir": "/ctx", "dockerfile": ["D"]}}, "build.dockerfile"),
        ("BuildImage", {"build": {"buildOptions": {"memory": "1g"}}}, "build.buildOptions.memory"),
        ("SearchImages", {"query": "x", "limit": 10**30}, "limit"),
        ("SearchImages", {"query": "x", "filter": "official"}, "filter"),
        ("ImportImage", {"source": "/nonexistent", "changes": "CMD x"}, "changes"),
        ("ExportImage", {"name": "base:1", "destination": "/nonexistent", "tags": "x"}, "tags"),
        ("GetImage", {"id": ["base:1"]}, "id"),
        ("GetImage", {"id": "x" * 100_000, "unknown": 1}, "unknown"),
    ]
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(CALL_TIMEOUT)
        conn.connect(server.varlink_sock)
        for method, parameters, name in hostile:
            reply = raw_call(conn, {"method": f"io.podman.{method}", "parameters": parameters})
            assert reply == {
                "error": "org.varlink.service.InvalidParameter",
                "parameters": {"parameter": name},
            }, (method, parameters)
        # a left-out or null field is its zero value, as podman's Go server read it
        got = raw_call(conn, {"method": "io.podman.GetImage", "parameters": {"id": "base:1"}})
        assert "localhost/base:1" in got["parameters"]["image"]["repoTags"]
        reply = raw_call(conn, {"method": "io.podman.ListImagesWithFilters",
                                "parameters": {"filters": None}})  # fmt: skip
        assert reply["parameters"]["images"], reply
        # oneway: no reply, and the next call is answered
        conn.sendall(json.dumps({"method": "io.podman.ImageExists", "oneway": True,
                                 "parameters": {"name": 5}}).encode() + b"\0")  # fmt: skip
        got = raw_call(conn, {"method": "io.podman.ImageExists", "parameters": {"name": "base:1"}})
        assert got == {"parameters": {"exists": 0}}

        # a streamed method called oneway runs and sends nothing: the next reply is the next call's
        saved = tmp_path / "oneway.tar"
        conn.sendall(json.dumps({"method": "io.podman.ImageSave", "oneway": True,
                                 "parameters": {"options": {"name": "base:1", "output": str(saved)}}}
                                ).encode() + b"\0")  # fmt: skip
        got = raw_call(conn, {"method": "io.podman.ImageExists", "parameters": {"name": "nosuch"}})
        assert got == {"parameters": {"exists": 1}}
        assert tarfile.is_tarfile(saved)


def test_replies_have_podman_s_shapes_and_error_names(server):
    seconds = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # Go's time.RFC3339 in UTC
    with podman(server) as p:
        image = p.GetImage("base:1")["image"]
        assert seconds.fullmatch(image["created"]), image["created"]
        assert [i["created"] for i in p.ListImages()["images"] if i["id"] == image["id"]] == [
            image["created"]
        ]
        assert all(seconds.fullmatch(h["created"]) for h in p.HistoryImage("base:1")["history"])
        assert re.fullmatch("[0-9a-f]{64}", image["topLayer"]), image["topLayer"]
        assert "localhost/base:1" in image["history"]  # the names it has had
        layers = json.loads(p.GetLayersMapWithImageInfo()["layerMap"])
        assert all(re.fullmatch("[0-9a-f]{64}", k) and v["ID"] == k for k, v in layers.items())
        info = json.loads(p.BuildImageHierarchyMap("base:1")["imageInfo"])
        assert info["ID"] == image["id"] and "localhost/base:1" in info["Tags"]
        assert info["Layers"][-1] == layers[image["topLayer"]]  # base first, top last
        assert info["Layers"][0]["ParentID"] == ""
        for call in (lambda: p.ImageTree("nosuch:1", False), lambda: p.Diff("nosuch:1"),
                     lambda: p.BuildImageHierarchyMap("nosuch:1")):  # fmt: skip
            with pytest.raises(varlink.VarlinkError) as err:
                call()
            name, params = error_of(err.value)
            assert name == "io.podman.ErrorOccurred" and "nosuch:1" in params["reason"], params
        # any failed lookup is ImageNotFound, as podman's NewFromLocal failures were
        for bad in ("", "::::", "UPPER", "x" * 300):
            for call in (p.GetImage, p.InspectImage, p.HistoryImage):
                with pytest.raises(varlink.VarlinkError) as err:
                    call(bad)
                name, params = error_of(err.value)
                assert name == "io.podman.ImageNotFound" and params["id"] == bad, params


def test_paths_with_a_nul_or_too_long_are_the_call_s_error(server, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM base:1\n")
    log_before = (server.work / "server.err").stat().st_size
    for bad in (f"{tmp_path}/a\0b", f"{tmp_path}/{'x' * 5000}"):
        with podman(server) as p:
            for method, args in (
                ("ImportImage", (bad, "imported:1", "", [], False)),
                ("ExportImage", ("base:1", bad, False, [])),
                ("ImageSave", ({"name": "base:1", "output": bad},)),
                ("BuildImage", ({"contextDir": bad},)),
                ("BuildImage", ({"contextDir": str(context), "iidfile": bad},)),
            ):
                with pytest.raises(varlink.VarlinkError) as err:
                    getattr(p, method)(*args)
                name, params = error_of(err.value)
                assert name == "io.podman.ErrorOccurred", (method, params)
                assert "internal error" not in params["reason"], params
    with open(server.work / "server.err", "rb") as log:
        log.seek(log_before)
        assert b"Traceback" not in log.read()  # no error of kiln's own


def test_a_message_nested_too_deep_closes_its_connection_only(server):
    log_before = (server.work / "server.err").stat().st_size
    deep = b'{"method": "io.podman.ListImagesWithFilters", "parameters": {"filters": '
    deep += b"[" * 100_000 + b"]" * 100_000 + b"}}\0"
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(CALL_TIMEOUT)
        conn.connect(server.varlink_sock)
        conn.sendall(deep)
        assert conn.recv(4096) == b""  # not a message kiln can read: the connection ends
    with podman(server) as p:
        assert p.ImageExists("base:1") == {"exists": 0}
    with open(server.work / "server.err", "rb") as log:
        log.seek(log_before)
        assert b"Traceback" not in log.read()


@pytest.mark.parametrize("fmt, member", [("oci-dir", "oci-layout"), ("docker-dir", "version"),
                                         ("docker-archive", "manifest.json")])  # fmt: skip
def test_image_save_without_output_is_a_new_tar_file_as_podman_s(server, fmt, member):
    with podman(server) as p:
        path = Path(p.ImageSave({"name": "base:1", "format": fmt})["reply"]["id"])
    try:
        assert path.is_file(), path  # a directory format too: the tar of its files
        with tarfile.open(path) as tar:
            assert member in tar.getnames()
    finally:
        path.unlink(missing_ok=True)


def test_pull_of_an_image_the_store_has_is_not_pulled_again(server, registry_plain):
    only_here = f"{registry_plain.host}/varlink/only-here:1"  # never pushed
    with podman(server) as p:
        base = p.TagImage("base:1", only_here)["image"]
        try:
            reply = p.PullImage(only_here, {"username": "", "password": ""})["reply"]
            assert reply["id"] == base  # podman's PullImage pulled only what was missing
        finally:
            p.UntagImage(base, only_here)


def test_client_hanging_up_mid_pull_from_a_silent_registry_lets_it_go(server):
    """A PullImage from a registry that accepts and never answers, and its client hangs up:
    the call's cancel flag now reaches the pull's connection (the call ran outside it, so
    the pull held its thread and the registry's connection to the connect deadline and
    its retries, and a server stop waited for it)."""
    registry = SilentServer()
    try:
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(CALL_TIMEOUT)
        conn.connect(server.varlink_sock)
        call = {"method": "io.podman.PullImage", "more": True,
                "parameters": {"name": f"{registry.host}/silent/x:1",
                               "creds": {"username": "", "password": ""}}}  # fmt: skip
        conn.sendall(json.dumps(call).encode() + b"\0")
        assert registry.wait_asked(1, CALL_TIMEOUT), "the pull never reached the registry"
        conn.close()
        assert registry.wait_all_gone(30), "the pull kept waiting after its client hung up"
    finally:
        registry.close()
    with podman(server, timeout=10) as p:
        assert p.ImageExists("base:1")["exists"] == 0

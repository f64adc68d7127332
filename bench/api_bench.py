"""``docker build`` through ``kiln serve`` vs ``podman system service`` and BuildKit.

    python bench/api_bench.py [--runs N] [--scenarios tiny,run20] [--kiln-base OLD/src]

One docker client for every builder: Debian's docker.io 20.10 (the one that drives the
private dockerd's BuildKit; a newer client wants buildx), with the classic builder
(DOCKER_BUILDKIT=0) against kiln and podman, as that client uses with them, and
DOCKER_BUILDKIT=1 against dockerd. Each repetition starts kiln's and podman's servers
on a fresh store with the busybox base image loaded (untimed) and a unix socket in a
temporary directory; BuildKit is a warm private dockerd shared by the run. Per
repetition and server, two timed builds of the scenario: the first after the server
started (row "SCENARIO first": kiln loads its build engine with it), then one more with
--no-cache (row "SCENARIO": a warm server, as BuildKit's daemon is; BuildKit builds
with --no-cache too). Each sample is the whole ``docker build`` client process: its
wall time, and the CPU time of the client plus the server's process tree (runc
included). Stores are kept until their scenario ends and deleted together before the
next one's first run (``--settle`` seconds later), never between two timed runs (see
benchlib's ``Deferred``); a file-creation probe is printed beside every run. Prints
medians and kiln/peer ratios; writes bench/results/<stamp>-api.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import build_bench  # noqa: E402

SCENARIOS = {"tiny": build_bench.ctx_tiny, "run20": build_bench.ctx_run20}
SETTLE = build_bench.SETTLE


def docker_cli() -> str | None:
    """The client that can drive every builder here: the private dockerd's (Debian's
    docker.io) when installed, else whichever ``docker`` there is (no BuildKit then)."""
    debian = bl._private_dockerd().DOCKER
    if os.path.exists(debian):
        return debian
    return shutil.which("docker") or (
        "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else None
    )


class Server:
    """One API server process on a unix socket, over the store of ``tool``."""

    def __init__(self, tool: bl.Tool):
        self.tool = tool
        self.sock = tool.work / "api.sock"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        if isinstance(self.tool, bl.Kiln):  # kiln, or kiln-base
            return [
                *self.tool.prefix(),
                "serve",
                "--host",
                f"unix://{self.sock}",
                "--access-log",
                "",
            ]
        return [
            *self.tool.podman_prefix(), "--runtime", "runc",
            "system", "service", "--time", "0", f"unix://{self.sock}",
        ]  # fmt: skip

    def start(self, timeout: float = 30) -> None:
        with open(self.tool.work / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.tool.env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise bl.BenchError(f"{self.tool.name} server exited: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise bl.BenchError(f"{self.tool.name} server did not answer /_ping: {self.log_tail()}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_tail(self) -> str:
        return (self.tool.work / "server.log").read_bytes()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_argv(docker: str, ctx: Path, tag: str, *, no_cache: bool) -> list[str]:
    return [docker, "build", *(["--no-cache"] if no_cache else []), "-t", tag, str(ctx)]


def server_builds(
    name: str, ctx: Path, scenario: str, docker: str, deferred: bl.Deferred
) -> tuple[bl.Sample, bl.Sample]:
    """Two timed ``docker build``s through a fresh server on a fresh store: the first after
    the server started, then one with --no-cache; the store is left to ``deferred``
    (deleted when the scenario ends), the server is stopped."""
    tool = bl.TOOLS[name](bl.scratch(f"ka-{name[:2]}-"))
    deferred.add(tool)
    server = Server(tool)
    try:
        tool.load_base(bl.base_tar())
        server.start()
        env = dict(os.environ, DOCKER_HOST=f"unix://{server.sock}", DOCKER_BUILDKIT="0")
        env["DOCKER_CONFIG"] = str(tool.work / "docker-config")  # no user config, no creds
        tag = f"localhost/api-{scenario}:latest"
        out = []
        for no_cache in (False, True):
            before = bl.tree_cpu(server.proc.pid)
            argv = build_argv(docker, ctx, tag, no_cache=no_cache)
            sample = bl.timed_sample(f"docker->{name}", argv, env, tool.work / "docker-build.log")
            sample.cpu += bl.tree_cpu(server.proc.pid) - before
            out.append(sample)
        return out[0], out[1]
    finally:
        server.stop()


def buildkit_build(ctx: Path, scenario: str, docker: str, deferred: bl.Deferred) -> bl.Sample:
    """One timed ``docker build --no-cache`` by the warm private dockerd's BuildKit."""
    tool = bl.BuildKit(bl.scratch("ka-bk-"))
    deferred.add(tool)
    tool.load_base(bl.base_tar())
    argv = [docker, *tool.build_argv(ctx, f"localhost/api-{scenario}:latest", no_cache=True)[1:]]
    return tool.measure(argv, log=tool.work / "docker-build.log")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument(
        "--settle",
        type=float,
        default=SETTLE,
        help="seconds to wait after deleting a scenario's stores, before the next scenario's "
        f"first timed run (default {SETTLE:g})",
    )
    bl.add_bytecode_flag(ap)
    bl.add_kiln_base_flag(ap)
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    docker = docker_cli()
    if docker is None:
        ap.error("the docker CLI is not installed")
    chosen = [s for s in args.scenarios.split(",") if s]
    if unknown := [s for s in chosen if s not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    servers = ["kiln", *bl.use_kiln_base(args.kiln_base), *bl.installed_peers(["podman"])]
    buildkit = docker == bl._private_dockerd().DOCKER and bl.installed_peers(["buildkit"])
    tools = [*servers, *(["buildkit"] if buildkit else [])]

    deferred = bl.Deferred()
    results: dict[str, dict[str, list[bl.Sample]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    probes: dict[str, list[bl.Probe]] = {}
    try:
        if buildkit:
            bl.BuildKit.start_daemon()
        bl.log("warming up (untimed)")
        for t in servers:
            if t != "podman":
                server_builds(t, SCENARIOS["tiny"](), "warm-up", docker, deferred)
        for scenario in chosen:
            ctx = SCENARIOS[scenario]()
            deferred.flush(args.settle)  # the last scenario's stores: before, not between, runs
            bl.log(f"== docker build via API: {scenario} ({bl.load_line()})")
            first = f"{scenario} first"
            results[scenario] = {t: [] for t in tools}
            results[first] = {t: [] for t in servers}
            probe_dir = bl.scratch("ka-probe-")
            deferred.add(probe_dir)
            for rep in range(args.runs):
                order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
                for t in order:
                    probe = bl.create_probe(probe_dir)
                    probes.setdefault(scenario, []).append(probe)
                    try:
                        if t == "buildkit":
                            warm = buildkit_build(ctx, scenario, docker, deferred)
                        else:
                            cold, warm = server_builds(t, ctx, scenario, docker, deferred)
                            results[first][t].append(cold)
                    except bl.BenchError as exc:  # counted, and the other runs still go on
                        errors.setdefault(scenario, {}).setdefault(t, []).append(str(exc))
                        bl.log(f"   run {rep + 1} {t:9s} FAILED\n{exc}")
                        continue
                    results[scenario][t].append(warm)
                    head = "" if t == "buildkit" else f"first {cold.wall:6.3f} s, then "
                    bl.log(f"   run {rep + 1} {t:9s} {head}{warm.wall:6.3f} s (cpu "
                           f"{warm.cpu:.3f} s)  {bl.probe_line(probe)}")  # fmt: skip
    finally:
        deferred.flush()
        bl.BuildKit.stop_daemon()

    print(bl.summary_table(results, tools))
    met = {}
    for scenario, per_tool in results.items():
        k = bl.median([x.wall for x in per_tool["kiln"]])
        for peer in ("podman", "buildkit"):
            p = bl.median([x.wall for x in per_tool.get(peer, [])])
            if k is not None and p is not None:
                met[f"{scenario}: kiln <= {peer}"] = k <= p
                print(f"[{'MET ' if k <= p else 'MISS'}] {scenario}: kiln {k:.3f} s <= "
                      f"{peer} {p:.3f} s")  # fmt: skip
    if errors:
        fails = [f"{s}/{t} {len(x)}/{args.runs}" for s, e in errors.items() for t, x in e.items()]
        print("\nfailed runs (not in the medians): " + "; ".join(fails))
    payload = {
        "runs": args.runs,
        "settle": args.settle,
        "kiln_bytecode_cache": not args.kiln_no_bytecode_cache,
        "scenarios": {
            n: {
                "samples": {t: [[x.wall, x.cpu] for x in xs] for t, xs in v.items()},
                "median": {t: bl.median([x.wall for x in xs]) for t, xs in v.items()},
                "median_cpu": {t: bl.median([x.cpu for x in xs]) for t, xs in v.items()},
                "ratio": {
                    p: bl.ratio(
                        bl.median([x.wall for x in v["kiln"]]), bl.median([x.wall for x in v[p]])
                    )
                    for p in v
                    if p != "kiln"
                },
                "errors": errors.get(n.removesuffix(" first"), {}),
                "probes_us": [
                    [x.create_us, x.fsync_us] for x in probes.get(n.removesuffix(" first"), [])
                ],
            }
            for n, v in results.items()
        },
        "targets": met,
    }
    print(f"\nwrote {os.path.relpath(bl.write_json('api', payload))}")
    return 0 if all(met.values()) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

"""``docker build`` through ``kiln serve`` vs through ``podman system service``.

    python bench/api_bench.py [--runs N] [--scenarios tiny,run20]

Each repetition starts each server on a fresh store with the busybox base image
loaded (untimed) and a unix socket in a temporary directory; the timed part is the
whole ``docker build`` client process (the classic builder, DOCKER_BUILDKIT=0,
the docker CLI being a client only). Same Dockerfiles as build_bench.py. Stores are
kept until their scenario ends and deleted together before the next one's first run
(``--settle`` seconds later), never between two timed runs: a deletion charges the
next run the file system's cost of it (see benchlib's ``Deferred``); a file-creation
probe is printed beside every run. Prints medians and kiln/podman ratios; writes
bench/results/<stamp>-api.json.
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


def one_build(name: str, ctx: Path, scenario: str, docker: str, deferred: bl.Deferred) -> float:
    """One timed ``docker build`` through a fresh server on a fresh store; the store is
    left to ``deferred`` (deleted when the scenario ends), the server is stopped."""
    tool = bl.TOOLS[name](bl.scratch(f"ka-{name[:2]}-"))
    deferred.add(tool)
    server = Server(tool)
    try:
        tool.load_base(bl.base_tar())
        server.start()
        env = dict(os.environ, DOCKER_HOST=f"unix://{server.sock}", DOCKER_BUILDKIT="0")
        env["DOCKER_CONFIG"] = str(tool.work / "docker-config")  # no user config, no creds
        argv = [docker, "build", "-t", f"localhost/api-{scenario}:latest", str(ctx)]
        return bl.timed(f"docker->{name}", argv, env, tool.work / "docker-build.log")
    finally:
        server.stop()


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
    args = ap.parse_args()
    bl.use_kiln_bytecode(not args.kiln_no_bytecode_cache)
    docker = docker_cli()
    if docker is None:
        ap.error("the docker CLI is not installed")
    chosen = [s for s in args.scenarios.split(",") if s]
    if unknown := [s for s in chosen if s not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    tools = ["kiln", *bl.installed_peers(["podman"])]

    deferred = bl.Deferred()
    results: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    probes: dict[str, list[bl.Probe]] = {}
    try:
        bl.log("warming up kiln (untimed)")
        one_build("kiln", SCENARIOS["tiny"](), "warm-up", docker, deferred)
        for scenario in chosen:
            ctx = SCENARIOS[scenario]()
            deferred.flush(args.settle)  # the last scenario's stores: before, not between, runs
            bl.log(f"== docker build via API: {scenario} ({bl.load_line()})")
            results[scenario] = {t: [] for t in tools}
            probe_dir = bl.scratch("ka-probe-")
            deferred.add(probe_dir)
            for rep in range(args.runs):
                order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
                for t in order:
                    probe = bl.create_probe(probe_dir)
                    probes.setdefault(scenario, []).append(probe)
                    try:
                        secs = one_build(t, ctx, scenario, docker, deferred)
                    except bl.BenchError as exc:  # counted, and the other runs still go on
                        errors.setdefault(scenario, {}).setdefault(t, []).append(str(exc))
                        bl.log(f"   run {rep + 1} {t:7s} FAILED\n{exc}")
                        continue
                    results[scenario][t].append(secs)
                    bl.log(f"   run {rep + 1} {t:7s} {secs:8.3f} s  {bl.probe_line(probe)}")
    finally:
        deferred.flush()

    print(bl.summary_table(results, tools))
    met = {}
    for scenario, per_tool in results.items():
        k, p = bl.median(per_tool["kiln"]), bl.median(per_tool.get("podman", []))
        if k is not None and p is not None:
            met[f"{scenario}: kiln <= podman"] = k <= p
            print(
                f"[{'MET ' if k <= p else 'MISS'}] {scenario}: kiln {k:.3f} s <= podman {p:.3f} s"
            )
    if errors:
        fails = [f"{s}/{t} {len(x)}/{args.runs}" for s, e in errors.items() for t, x in e.items()]
        print("\nfailed runs (not in the medians): " + "; ".join(fails))
    payload = {
        "runs": args.runs,
        "settle": args.settle,
        "kiln_bytecode_cache": not args.kiln_no_bytecode_cache,
        "scenarios": {
            n: {
                "samples": v,
                "median": {t: bl.median(x) for t, x in v.items()},
                "ratio": {p: bl.ratio(bl.median(v["kiln"]), bl.median(v[p])) for p in tools[1:]},
                "errors": errors.get(n, {}),
                "probes_us": [[x.create_us, x.fsync_us] for x in probes.get(n, [])],
            }
            for n, v in results.items()
        },
        "targets": met,
    }
    print(f"\nwrote {os.path.relpath(bl.write_json('api', payload))}")
    return 0 if all(met.values()) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

"""Harness for the data-driven Dockerfile cases (one directory per case).

A case directory holds a ``Containerfile`` (and any other files of the build
context) plus ``expect.json``. ``expect.json`` keys (all optional):

* ``flags``: extra ``kiln build`` flags (podman build's). ``{ctx}``, ``{tmp}``
  and ``{http}`` are replaced by the context dir, a scratch dir and the URL of
  the case's HTTP server.
* ``env``: extra environment for the build process.
* ``setup``: ``chmod`` {rel: "0600"}, ``symlinks`` {rel: target}, ``tars``
  [{name, compression: none|gzip|bzip2|xz|zstd, members {path: text}}],
  ``tmp_files`` {name: text} written to the scratch dir, ``http``: true to serve
  the context's ``served/`` directory on 127.0.0.1 (``{http}``).
* ``pre_builds``: [{file, tag, flags}] built first from the same context.
* ``stdin``: "containerfile" (``-f -``), "context-tar" (context ``-``) or
  "context-dockerfile" (context ``-`` holding only a Containerfile, as ``build - < file``).
* ``config``: exact values of keys of the image config's ``config`` object
  (``null``: absent or empty). ``config_doc``: exact top-level values.
* ``labels``: labels that must be present with these values.
* ``files``: path -> subset of {type, mode, uid, gid, size, content, target, mtime}.
* ``absent``: paths that must not exist. ``layers``: total layer count.
* ``history``: the ``created_by`` of the history entries after the base's.
* ``history_excludes``: strings that must appear nowhere in config or history.
* ``manifest_media_type``, ``iidfile`` (true), ``output`` {kind, files, absent}.
* ``rebuild``: {flags, same_id} build again and compare image IDs.
* ``parity``: true to compare with ``buildah bud``; ``parity_xfail``: reason.
* ``parity_unlisted_args``: {names, why}: build-arg names buildah lists in its ``ARG``
  history lines that kiln deliberately leaves out (Docker's documented behaviour for the
  predefined proxy args); they are dropped from buildah's ARG lines before comparing.
* ``xfail``: "kiln bug: ..." (strict xfail for the kiln check).
* ``note``: free text, e.g. where buildah and BuildKit differ and which one kiln follows.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from contextlib import nullcontext
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parent
TESTS_DIR = CASES_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import image_probe  # noqa: E402
from file_server import serving  # noqa: E402
from mount_points import mount_points_under  # noqa: E402

BASE = "busybox:latest"
DATA_IMAGE = "kiln-test/data:1"
MTIME = 1_700_000_000
DATA_MEMBERS = {
    "data/hello.txt": (b"hello from the data image\n", 0o640, 1000, 1000),
    "data/sub/deep.txt": (b"deep\n", 0o644, 0, 0),
}


def load_cases() -> list[tuple[str, dict]]:
    cases = []
    for d in sorted(CASES_DIR.iterdir()):
        if d.is_dir() and (d / "expect.json").exists():
            cases.append((d.name, json.loads((d / "expect.json").read_text())))
    return cases


# --- base images ---------------------------------------------------------------------------------


def _data_rootfs(path: str) -> str:
    with tarfile.open(path, "w") as tar:
        for name in ("data", "data/sub"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name, (data, mode, uid, gid) in DATA_MEMBERS.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, MTIME
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("data/link")
        info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "hello.txt", MTIME
        tar.addfile(info)
    return path


def make_base_images(root: str, work: str) -> dict[str, str]:
    """Import busybox and the data image into the store at ``root``; returns archive paths."""
    from fixtures_images import make_busybox_rootfs, save_docker_archive
    from kiln.image import import_tarball, open_store_image
    from kiln.store import Store

    rootfs = make_busybox_rootfs(os.path.join(work, "busybox.tar"))
    data = _data_rootfs(os.path.join(work, "data.tar"))
    archives = {}
    store = Store.open(root)
    try:
        for tar, name, changes in (
            (rootfs, BASE, ['CMD ["/bin/sh"]']),
            (data, DATA_IMAGE, []),
        ):
            with open(tar, "rb") as f:
                rec = import_tarball(store, f, changes, "base", names=[name], timestamp=MTIME)
            out = os.path.join(work, name.replace("/", "_").replace(":", "_") + ".docker.tar")
            save_docker_archive(open_store_image(store, rec.id), out, names=(name,))
            archives[name] = out
    finally:
        store.close()
    return archives


# --- kiln ----------------------------------------------------------------------------------------


class Kiln:
    """The ``kiln`` CLI over one store root."""

    def __init__(self, root: str, work: str):
        self.root, self.work = root, work
        self.env = dict(os.environ, KILN_ROOT=root, KILN_RUNTIME_DIR=os.path.join(work, "run"))

    def run(self, args, *, input=None, env=None, cwd=None, timeout=120):
        cmd = [sys.executable, "-c", "from kiln.cli.main import main; main()", *args]
        return subprocess.run(
            cmd,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            env=dict(self.env, **(env or {})),
            cwd=cwd,
            timeout=timeout,
        )

    def build(self, context, flags=(), *, tag=None, input=None, env=None):
        args = ["build"]
        if tag:
            args += ["-t", tag]
        return self.run([*args, *flags, str(context)], input=input, env=env)

    def probe(self, ref: str) -> image_probe.Probe:
        return image_probe.kiln_image(self.root, ref)

    def image_count(self) -> int:
        return image_probe.kiln_image_count(self.root)


# --- buildah -------------------------------------------------------------------------------------


# Where buildah's overlay driver failed to mount, by file system (st_dev): the reason.
_OVERLAY_FAILED: dict[int, str] = {}


def _overlay_works(cmd: list[str]) -> str | None:
    """None when buildah's overlay driver can mount a container in the storage of ``cmd``;
    else why not. A scratch container is mounted, the one step a build needs that vfs doesn't."""

    def run(*args):
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)

    try:
        made = run("from", "--pull-never", "--name", "kiln-overlay-probe", "scratch")
        if made.returncode != 0:
            return made.stderr.strip()
        mounted = run("mount", "kiln-overlay-probe")
        run("rm", "kiln-overlay-probe")
        return None if mounted.returncode == 0 else mounted.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)


class Buildah:
    """``buildah`` over a private storage with the same base images loaded.

    The storage driver is overlay: vfs copies the whole root file system for every layer
    and container (a ``bud`` took about 1.5x the time). Where overlay cannot mount there
    (a work dir on overlayfs, say), vfs is used, with the reason given once as a warning.
    Both give the same images: the driver is how layers are stored, not what they hold.
    """

    def __init__(self, work: str):
        self.work = work
        self.root = os.path.join(work, "root")
        self.runroot = os.path.join(work, "runroot")
        self.driver = self._pick_driver()
        self.cmd = self._cmd(self.driver)

    def _cmd(self, driver: str) -> list[str]:
        return ["buildah", "--root", self.root, "--runroot", self.runroot,
                "--storage-driver", driver]  # fmt: skip

    def _pick_driver(self) -> str:
        os.makedirs(self.work, exist_ok=True)
        dev = os.stat(self.work).st_dev
        if dev not in _OVERLAY_FAILED:
            why = _overlay_works(self._cmd("overlay"))
            if why is None:
                return "overlay"
            _OVERLAY_FAILED[dev] = why
            warnings.warn(f"buildah's overlay storage does not work here, using vfs: {why}",
                          stacklevel=3)  # fmt: skip
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)
        return "vfs"

    def close(self) -> None:
        """Unmount what a killed ``buildah`` left mounted in the storage (overlay mounts)."""
        for point in sorted(mount_points_under(self.root, self.runroot), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)

    def load(self, archives: dict[str, str]) -> None:
        for name, path in archives.items():
            subprocess.run([*self.cmd, "pull", "-q", f"docker-archive:{path}"], check=True,
                           capture_output=True)  # fmt: skip
            full = name if "/" in name else f"library/{name}"
            subprocess.run([*self.cmd, "tag", f"localhost/{name}", f"docker.io/{full}"],
                           check=True, capture_output=True)  # fmt: skip

    def build(self, context, flags=(), *, tag, input=None, env=None):
        cmd = [*self.cmd, "bud", "--runtime", "runc", "--layers", "--pull-never", "-t", tag]
        return subprocess.run(
            [*cmd, *flags, str(context)],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            env=dict(os.environ, **(env or {})),
            timeout=180,
        )

    def probe(self, ref: str) -> image_probe.Probe:
        return image_probe.buildah_image(self.cmd, ref, self.work)


# --- contexts ------------------------------------------------------------------------------------

_COMPRESSORS = {
    "none": lambda b: b,
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return _COMPRESSORS[kind](data)


def _tar_bytes(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def prepare_context(name: str, case: dict, dest: Path) -> Path:
    """Copy the case directory to ``dest``/ctx and apply its ``setup``; returns the context."""
    ctx = dest / "ctx"
    shutil.copytree(CASES_DIR / name, ctx, symlinks=True)
    (ctx / "expect.json").unlink()
    setup = case.get("setup", {})
    for t in setup.get("tars", []):
        (ctx / t["name"]).write_bytes(_compress(t["compression"], _tar_bytes(t["members"])))
    for rel, target in setup.get("symlinks", {}).items():
        os.symlink(target, ctx / rel)
    for rel, mode in setup.get("chmod", {}).items():
        os.chmod(ctx / rel, int(mode, 8))
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    for rel, text in setup.get("tmp_files", {}).items():
        (tmp / rel).write_text(text)
    return ctx


def substitute(values, mapping: dict[str, str]):
    out = []
    for v in values:
        for key, rep in mapping.items():
            v = v.replace("{" + key + "}", rep)
        out.append(v)
    return out


def context_tar(ctx: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(ctx.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(ctx)), recursive=False)
    return buf.getvalue()


def run_case_build(tool, name: str, case: dict, dest: Path, tag: str):
    """Prepare the context and run the case's pre-builds and build with ``tool``.

    Returns (completed process, context dir, scratch dir, mapping).
    """
    ctx = prepare_context(name, case, dest)
    tmp = dest / "tmp"
    mapping = {"ctx": str(ctx), "tmp": str(tmp)}
    serve = case.get("setup", {}).get("http")
    with serving(ctx / "served") if serve else nullcontext() as url:
        if url:
            mapping["http"] = url
            cf = ctx / "Containerfile"
            cf.write_text(cf.read_text().replace("{http}", url))
        for pre in case.get("pre_builds", []):
            flags = ["-f", str(ctx / pre["file"]), *substitute(pre.get("flags", []), mapping)]
            res = tool.build(ctx, flags, tag=pre["tag"])
            assert res.returncode == 0, f"pre-build {pre['tag']} failed: {res.stderr.decode()}"
        flags = substitute(case.get("flags", []), mapping)
        env = case.get("env")
        stdin = case.get("stdin")
        if stdin == "containerfile":
            res = tool.build(ctx, ["-f", "-", *flags], tag=tag,
                             input=(ctx / "Containerfile").read_bytes(), env=env)  # fmt: skip
        elif stdin == "context-dockerfile":  # `build - < Containerfile`: no context
            data = (ctx / "Containerfile").read_bytes()
            res = tool.build("-", flags, tag=tag, input=data, env=env)
        elif stdin == "context-tar":
            data = context_tar(ctx)
            res = tool.build("-", flags, tag=tag, input=data, env=env)
        else:
            res = tool.build(ctx, flags, tag=tag, env=env)
    return res, ctx, tmp, mapping


# --- expectations --------------------------------------------------------------------------------


def _empty(value) -> bool:
    return value in (None, [], {}, "")


def check_config(probe: image_probe.Probe, case: dict) -> None:
    cfg = probe.config
    for key, want in case.get("config", {}).items():
        got = cfg.get(key)
        if want is None:
            assert _empty(got), f"config {key}: expected none, got {got!r}"
        else:
            assert got == want, f"config {key}: expected {want!r}, got {got!r}"
    for key, want in case.get("config_doc", {}).items():
        got = probe.config_doc.get(key)
        assert got == want, f"config document {key}: expected {want!r}, got {got!r}"
    labels = cfg.get("Labels") or {}
    for key, want in case.get("labels", {}).items():
        assert labels.get(key) == want, f"label {key}: expected {want!r}, got {labels.get(key)!r}"


def check_history(probe: image_probe.Probe, case: dict) -> None:
    new = probe.history[case.get("base_history", 1) :]
    if "history" in case:
        got = [h.get("created_by", "") for h in new]
        assert got == case["history"], (
            f"history created_by: expected {case['history']!r}, got {got!r}"
        )
    everything = "\n".join(h.get("created_by", "") for h in probe.history)
    for text in case.get("history_contains", []):
        assert text in everything, f"{text!r} not in history: {everything}"
    blob = json.dumps(probe.config_doc)
    for text in case.get("history_excludes", []):
        assert text not in blob, f"{text!r} leaked into the image config or history"
    if "history_created" in case:
        got = {h.get("created") for h in new}
        assert got == {case["history_created"]}, f"history created times: {got}"
    for text in case.get("layers_exclude", []):
        for opener in probe.layer_openers:
            with opener() as raw:
                data = image_probe.open_decompressed(raw).read()
            assert text.encode() not in data, f"{text!r} found in a layer"


def check_files(files: dict, case_files: dict, absent=()) -> None:
    for path, want in case_files.items():
        assert path in files, f"{path} missing from the image"
        e = files[path]
        for key, value in want.items():
            if key == "content":
                got = e.sha256
                import hashlib

                value = hashlib.sha256(value.encode()).hexdigest()
            elif key == "mode":
                got, value = oct(e.mode), oct(int(value, 8))
            else:
                got = getattr(e, key)
            assert got == value, f"{path} {key}: expected {value!r}, got {got!r} ({e.describe()})"
    for path in absent:
        assert path not in files, f"{path} should not be in the image"


def check_image(probe: image_probe.Probe, case: dict) -> None:
    check_config(probe, case)
    check_history(probe, case)
    if "layers" in case:
        assert probe.layer_count == case["layers"], (
            f"expected {case['layers']} layers, got {probe.layer_count}"
        )
    if "manifest_media_type" in case:
        assert probe.manifest_media_type == case["manifest_media_type"]
        assert probe.manifest.get("mediaType") == case["manifest_media_type"]
    if "config_media_type" in case:
        assert probe.manifest["config"]["mediaType"] == case["config_media_type"]
    for key, want in case.get("manifest_annotations", {}).items():
        got = (probe.manifest.get("annotations") or {}).get(key)
        assert got == want, f"manifest annotation {key}: expected {want!r}, got {got!r}"
    if case.get("files") or case.get("absent"):
        check_files(probe.files(), case.get("files", {}), case.get("absent", ()))
    for path, text in case.get("file_contains", {}).items():
        assert text in probe.read(path).decode(), f"{path} should contain {text!r}"


# --- parity --------------------------------------------------------------------------------------

PARITY_CONFIG_KEYS = (
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes",
    "StopSignal", "Healthcheck", "Shell", "OnBuild",
)  # fmt: skip
# buildah labels every image with its own version; not a property of the Dockerfile.
BUILDER_LABELS = ("io.buildah.version",)
# Mount points a runtime leaves behind in a RUN layer (buildah 1.28 commits them, empty).
RUNTIME_ARTIFACTS = (
    "/dev", "/proc", "/sys", "/run", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
)  # fmt: skip


def parity_config(probe: image_probe.Probe) -> dict:
    cfg = probe.config
    out = {}
    for key in PARITY_CONFIG_KEYS:
        value = cfg.get(key)
        if key == "Labels" and value:
            value = {k: v for k, v in value.items() if k not in BUILDER_LABELS}
        out[key] = None if _empty(value) else value
    return out


def masked_history(probe: image_probe.Probe) -> list[str]:
    import re

    out = []
    for h in probe.history:
        text = h.get("created_by", "")
        # COPY/ADD name their content by an implementation-specific hash
        # (buildah: "file:<hex>", or a bare hex for URLs): keep the instruction and dest.
        out.append(re.sub(r"(#\(nop\) (?:COPY|ADD)(?: --\S+)*) \S+ in ", r"\1 * in ", text))
    return out


def without_arg_names(history: list[str], names: list[str]) -> list[str]:
    """``history`` with ``names`` dropped from its ``#(nop) ARG`` lines."""
    out = []
    for text in history:
        head, sep, rest = text.partition("#(nop) ARG ")
        if sep:
            text = head + sep + " ".join(n for n in rest.split(" ") if n not in names)
        out.append(text)
    return out


def parity_files(probe: image_probe.Probe, base_files: dict) -> dict:
    """The merged listing without runtime mount-point leftovers absent from the base."""
    return without_runtime_artifacts(probe.files(), base_files)


def without_runtime_artifacts(files: dict, base_files: dict) -> dict:
    """``files`` (a merged listing or one layer's entries) without the runtime's empty
    mount points (and what is under them) that the base image does not have."""
    for path in RUNTIME_ARTIFACTS:
        e = files.get(path)
        if e is not None and path not in base_files and e.size == 0:
            for p in [p for p in files if p == path or p.startswith(path + "/")]:
                del files[p]
    return files

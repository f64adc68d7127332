"""The differential test bed: one build context, three builders, compared field by field.

Every directory under ``tests/differential/cases/`` is one case and is the build context
itself, apart from these files, which are taken out before building:

* ``Dockerfile`` (required; stays in the context, as it would in a user's checkout).
* ``expected-differences`` (required, usually empty). One entry a line, ``#`` comments:

  - ``bug: <one line>``: kiln differs from the references because of a kiln bug; both
    comparisons are strict xfails with that reason (a fix turns them into unexpected
    passes). ``bug buildah: ...`` / ``bug buildkit: ...`` limit it to one reference.
  - ``buildkit <field>: <why>``: BuildKit (dockerd 20.10) differs from buildah in
    ``<field>`` and kiln follows buildah; the BuildKit comparison ignores differences
    in that field, and fails if the difference is no longer seen. ``buildah <field>:``
    the same for a deliberate difference from buildah. ``buildah-vfs <field>:``: a
    difference buildah shows only on its vfs storage (where the bed falls back to it).
    ``<field>`` is a prefix of the names :func:`compare` gives: ``result``,
    ``config.<Key>``, ``history``, ``history.created_by``, ``layers``, ``layers:N:/path``,
    ``files`` or ``files:/some/path`` (which covers ``layers:N:/some/path`` too).
    Differences every case shows are recorded once, in ``EVERY_CASE``.
* ``flags`` (optional): build flags given to all three builders, one or more a line
  (shell words, ``#`` comments). ``{ctx}`` is replaced by the context's path.
* ``setup`` (optional): a ``/bin/sh`` script run in the copied context before building,
  for what git cannot hold (empty directories, modes other than 0644/0755, tarballs).

What is compared (:func:`compare`), each under its own name: ``result`` (success or
failure); ``config.<Key>`` for the keys of ``CONFIG_KEYS`` (ArgsEscaped false and absent
alike); the config document's ``architecture``, ``os``, ``variant``, ``author`` and
whether it has ``container_config``; ``history``, the pattern of ``empty_layer`` after the
base image, and when that agrees ``history.created_by`` / ``history.comment`` /
``history.author`` (the first differing entry; COPY/ADD content digests masked; the
comments builders sign every entry with aside; with BuildKit, whose created_by has its own
form, only RUN lines); ``layers`` (how many) and when as many ``layers:N:/path``, each
layer's own tar entries (whiteouts, opaque markers, repeated parent directories and hard
links included); and ``files:/path``, the merged root filesystem (path, type, mode,
uid/gid, size, sha256, link target). Mtimes are never compared; nor are the empty runtime
mount points RUN steps leave, nor /etc repeated unchanged in a layer for one of them.

The references: ``buildah bud --format docker --runtime runc`` on a private overlay
(or, where overlay cannot mount, vfs) storage (:class:`harness.Buildah`), and BuildKit
inside a private ``dockerd`` (:class:`Dockerd`, driven by Debian's docker.io 20.10 client
with ``DOCKER_BUILDKIT=1``). The base images
are made by the test (:func:`harness.make_base_images`) and loaded into each; nothing is
pulled.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import image_probe  # noqa: E402
import private_dockerd  # noqa: E402
from dockerfile_cases import harness  # noqa: E402

CASES_DIR = Path(__file__).resolve().parent / "cases"
BED_FILES = ("expected-differences", "flags", "setup")
CONFIG_KEYS = (*harness.PARITY_CONFIG_KEYS, "ArgsEscaped")
# top-level fields of the config document; container_config by presence only (Docker's
# classic builder wrote the last step's container settings there)
IMAGE_KEYS = ("architecture", "os", "variant", "author", "container_config")
HISTORY_KEYS = ("created_by", "comment", "author")
# what a builder writes into every history entry to sign it, not what the Dockerfile said:
# buildah's "FROM <parent image>" comments, BuildKit's "buildkit.dockerfile.v0"
BUILDER_COMMENTS = re.compile(r"^(FROM \S+|buildkit\.dockerfile\.v0)$")
REFERENCES = ("buildah", "buildkit")
# Differences every case shows where both build an image of their own (not their base
# image as it is, which buildah and BuildKit give for a Dockerfile of only FROM), recorded
# here once (reference -> field -> why) rather than in each case's expected-differences;
# the same rules hold (one that is no longer seen fails).
EVERY_CASE = {
    "buildah": {
        "container_config": "buildah 1.28 writes container_config (a copy of config: the "
        "Docker classic builder's record of its last step's container, which moby deprecated "
        "at API 1.45) into Docker-format images; kiln writes none, as BuildKit does (kiln's "
        "Docker API shows an empty one below 1.45, as dockerd does for BuildKit's images)",
    },
}


# --- cases ---------------------------------------------------------------------------------------


@dataclass
class Expected:
    bugs: dict[str, str] = field(default_factory=dict)  # reference -> reason
    ignored: dict[str, dict[str, str]] = field(default_factory=dict)  # ref -> field -> why


_BUG = re.compile(r"^bug(?:\s+(buildah|buildkit))?:\s*(\S.*)$")
_IGNORE = re.compile(r"^(buildah|buildah-vfs|buildkit)\s+(\S+):\s+(\S.*)$")


def parse_expected(text: str, where: str = "expected-differences") -> Expected:
    out = Expected()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := _BUG.match(line):
            for ref in (m[1],) if m[1] else REFERENCES:
                out.bugs[ref] = m[2]
        elif m := _IGNORE.match(line):
            out.ignored.setdefault(m[1], {})[m[2]] = m[3]
        else:
            raise ValueError(f"{where}:{n}: cannot read {line!r}")
    return out


@dataclass
class Case:
    name: str
    path: Path
    expected: Expected
    flags: list[str]


def load_cases() -> list[Case]:
    cases = []
    for d in sorted(CASES_DIR.iterdir()):
        if not (d / "Dockerfile").is_file():
            continue
        exp_file = d / "expected-differences"
        expected = parse_expected(exp_file.read_text(), str(exp_file))
        flags = []
        if (d / "flags").exists():
            for line in (d / "flags").read_text().splitlines():
                flags += shlex.split(line, comments=True)
        cases.append(Case(d.name, d, expected, flags))
    return cases


def prepare_context(case: Case, dest: Path) -> Path:
    ctx = dest / "ctx"
    shutil.copytree(case.path, ctx, symlinks=True)
    for name in BED_FILES:
        if (ctx / name).exists() and name != "setup":
            (ctx / name).unlink()
    if (ctx / "setup").exists():
        script = (ctx / "setup").read_text()
        (ctx / "setup").unlink()
        _run_setup(script, ctx)
    return ctx


def _run_setup(script: str, ctx: Path, attempts: int = 3) -> None:
    """Run a case's setup script. Starting it from one of the bed's worker threads failed
    once in CI with EFAULT from exec (the child of a vfork, while other threads ran
    builds); that is the spawn failing, not the script, so it is tried again."""
    for attempt in range(attempts):
        try:
            subprocess.run(["/bin/sh", "-euc", script], cwd=ctx, check=True, timeout=60,
                           capture_output=True)  # fmt: skip
            return
        except OSError as exc:
            if exc.errno != errno.EFAULT or attempt == attempts - 1:
                raise
            time.sleep(0.2)


# --- what is compared ----------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    log: str
    config: dict | None = None
    layering: str = ""
    files: dict | None = None
    doc: dict = field(default_factory=dict)  # the config document, as written
    layers: list[dict] = field(default_factory=list)  # each layer's own entries, bottom first
    builder: str = ""
    base_history: int = 0

    @property
    def history(self) -> list[dict]:
        return self.doc.get("history") or []

    @property
    def history_tail(self) -> list[dict]:
        """The history entries after the base image's."""
        return self.history[self.base_history :]


def snapshot(
    probe: image_probe.Probe, base_files: dict, base_history: int, builder: str = ""
) -> Outcome:
    layering = " ".join(
        "empty" if h.get("empty_layer") else "layer" for h in probe.history[base_history:]
    )
    merged, layers = image_probe.listings(probe.layer_openers)
    files = harness.without_runtime_artifacts(merged, base_files)
    config = harness.parity_config(probe)
    config["ArgsEscaped"] = probe.config.get("ArgsEscaped") or None  # false is its absence
    layers = [_layer_without_runtime_artifacts(layer, base_files) for layer in layers]
    return Outcome(True, "", config, layering, files, probe.config_doc, layers, builder,
                   base_history)  # fmt: skip


def _layer_without_runtime_artifacts(layer: dict, base_files: dict) -> dict:
    """A layer's entries without the runtime's empty mount points, and without a base
    directory holding one (/etc) repeated unchanged with nothing under it: a RUN's layer
    repeats /etc because the runtime made /etc/hostname there (buildah keeps the file,
    BuildKit removes it), not because the step changed it."""
    kept = harness.without_runtime_artifacts(dict(layer), base_files)
    for parent in _RUNTIME_PARENTS:
        unchanged = parent in kept and kept[parent] == base_files.get(parent)
        if unchanged and not any(p.startswith(parent + "/") for p in kept):
            del kept[parent]
    return kept


_RUNTIME_PARENTS = sorted({os.path.dirname(p) for p in harness.RUNTIME_ARTIFACTS} - {"/"})


def compare(ours: Outcome, theirs: Outcome) -> list[tuple[str, object, object]]:
    """Every difference as (field, kiln's value, the reference's value), in a fixed order."""
    if ours.ok != theirs.ok:
        return [("result", _result(ours), _result(theirs))]
    if not ours.ok:
        return []
    out = []
    for key in CONFIG_KEYS:
        a, b = ours.config.get(key), theirs.config.get(key)
        if a != b:
            out.append((f"config.{key}", a, b))
    for key in IMAGE_KEYS:
        a, b = _image_field(ours.doc, key), _image_field(theirs.doc, key)
        if a != b:
            out.append((key, a, b))
    if ours.layering != theirs.layering:  # which steps made layers: the rest would follow
        out.append(("history", ours.layering, theirs.layering))
    else:
        out += _history_differences(ours, theirs)
        out += _layer_differences(ours.layers, theirs.layers)
    for path in sorted(set(ours.files) | set(theirs.files)):
        a, b = ours.files.get(path), theirs.files.get(path)
        if a != b:
            out.append((f"files:{path}", a and a.describe(), b and b.describe()))
    return out


def _image_field(doc: dict, key: str) -> object:
    value = doc.get(key)
    if key == "container_config":
        return "present" if value else None
    return value or None


def _history_differences(ours: Outcome, theirs: Outcome) -> list[tuple[str, object, object]]:
    """The first differing entry (after the base's) of each of ``HISTORY_KEYS``; called
    when both have the same entries (else ``history`` differs already)."""
    out = []
    pairs = list(zip(ours.history_tail, theirs.history_tail, strict=True))
    for key in HISTORY_KEYS:
        for n, (a, b) in enumerate(pairs, 1):
            va, vb = _history_value(a, key), _history_value(b, key)
            if key == "created_by" and theirs.builder == "buildkit":
                va, vb = _buildkit_run_line(va, vb)
            if va != vb:
                out.append((f"history.{key}", f"#{n} {va!r}", f"#{n} {vb!r}"))
                break
    return out


_COPY_CONTENT = re.compile(r"(#\(nop\) (?:COPY|ADD)(?: --\S+)*) \S+ in ")


def _history_value(entry: dict, key: str) -> str:
    value = entry.get(key) or ""
    if key == "created_by":
        # buildah names COPY/ADD content by a digest of a tar of it (mtimes included)
        return _COPY_CONTENT.sub(r"\1 <content> in ", value)
    if key == "comment" and BUILDER_COMMENTS.match(value):
        return ""
    return value


_BUILDKIT_RUN = re.compile(r"^RUN (.*) # buildkit$", re.S)
_RUN_FLAGS = re.compile(r"(?<=/bin/sh -c )(?:--\S+\s+)+")


def _buildkit_run_line(ours: str, theirs: str) -> tuple[str, str]:
    """BuildKit writes created_by in its own form (``WORKDIR /w``, ``COPY a /d # buildkit``);
    kiln writes buildah's, so only RUN lines are compared with it: BuildKit's
    ``RUN <line> # buildkit`` with kiln's line less the RUN's flags (``--mount=...``), which
    BuildKit leaves out. The other entries count as equal."""
    m = _BUILDKIT_RUN.match(theirs)
    if m and "#(nop)" not in ours:
        return _RUN_FLAGS.sub("", ours, count=1), m[1]
    return "", ""


def _layer_differences(ours: list[dict], theirs: list[dict]) -> list[tuple[str, object, object]]:
    """``layers``: how many; then, when as many, ``layers:N:/path`` for each entry of layer
    N (1 = the bottom one) that differs (type, mode, owner, size, content, link target)."""
    if len(ours) != len(theirs):
        return [("layers", len(ours), len(theirs))]
    out = []
    for n, (a, b) in enumerate(zip(ours, theirs, strict=True), 1):
        for path in sorted(set(a) | set(b)):
            ea, eb = a.get(path), b.get(path)
            if ea != eb:
                out.append((f"layers:{n}:{path}", ea and ea.describe(), eb and eb.describe()))
    return out


def _result(o: Outcome) -> str:
    if o.ok:
        return "built"
    tail = o.log.strip().splitlines()[-3:]
    return "failed: " + " | ".join(tail)


def _matches(name: str, field: str) -> bool:
    """``files:/a`` covers /a and everything under it, in the merged filesystem and in the
    layers (``layers:N:/a``: a file that ends up different differs in the layer that wrote
    it); ``config`` every config key; ``history`` its created_by, comment and author too."""
    if (field == "files" or field.startswith("files:")) and (m := _LAYER_ENTRY.match(name)):
        if field == "files":
            return True
        name = "files:" + m[1]
    return name == field or any(name.startswith(field + sep) for sep in "/:.")


_LAYER_ENTRY = re.compile(r"^layers:\d+:(/.*)$")


def judge(
    case: Case, reference: str, ours: Outcome, theirs: Outcome, *, buildah_storage: str = "overlay"
) -> str | None:
    """None when kiln matches ``reference`` up to the case's recorded differences
    (``buildah-vfs`` ones too when buildah's storage is vfs)."""
    diffs = compare(ours, theirs)
    ignored = dict(case.expected.ignored.get(reference, {}))
    if reference == "buildah" and buildah_storage == "vfs":
        ignored.update(case.expected.ignored.get("buildah-vfs", {}))
    # the reference's image is its own when a step of the Dockerfile wrote into its history
    # (the bases the bed makes have none: FROM scratch, too, has no base entry to skip)
    own_image = ours.ok and theirs.ok and any(h.get("created_by") for h in theirs.history)
    every = EVERY_CASE.get(reference, {}) if own_image else {}
    left = [d for d in diffs if not any(_matches(d[0], f) for f in [*ignored, *every])]
    for f in [*ignored, *every]:
        if not any(_matches(d[0], f) for d in diffs):
            return (
                f"{case.name}: expected-differences says {reference} differs in {f!r}, "
                "but it no longer does: remove the entry"
            )
    if not left:
        return None
    name, a, b = left[0]
    msg = f"{case.name}: first difference in {name}:\n  kiln:      {a}\n  {reference + ':':10} {b}"
    if len(left) > 1:
        msg += f"\n  ({len(left) - 1} more: {', '.join(d[0] for d in left[1:6])})"
    for label, o in (("kiln", ours), (reference, theirs)):
        if not o.ok:
            msg += f"\n--- {label} log (tail) ---\n" + "\n".join(o.log.splitlines()[-15:])
    return msg


# --- the BuildKit reference ----------------------------------------------------------------------


class Dockerd(private_dockerd.Dockerd):
    """The private dockerd of ``tests/private_dockerd.py``, able to probe what it built."""

    def __init__(self, work: str):
        super().__init__(work)
        self._n = 0
        self._lock = threading.Lock()

    def probe(self, tag: str) -> image_probe.Probe:
        with self._lock:
            self._n += 1
            out = os.path.join(self.work, f"save-{self._n}.tar")
        self.docker("save", "-o", out, tag)
        try:
            return image_probe.docker_archive_image(out)
        finally:
            os.unlink(out)


# --- the bed: builds every selected case once per builder, a few at a time -----------------------


class Bed:
    def __init__(self, work: Path, *, buildkit: bool, workers: int = 4):
        self.work = work
        root = str(work / "kiln-root")
        archives = harness.make_base_images(root, str(work))
        self.kiln = harness.Kiln(root, str(work))
        self.buildah = harness.Buildah(str(work / "buildah"))
        self.buildah.load(archives)
        base = self.buildah.probe(harness.BASE)
        self.base_files = base.files()
        self.base_history = len(base.history)
        self.dockerd = None
        if buildkit:
            self.dockerd = Dockerd(str(work / "dockerd"))
            os.makedirs(self.dockerd.work)
            self.dockerd.start()
            self.dockerd.load(archives)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffbed")
        self.futures: dict[str, Future] = {}
        self.timings: dict[str, dict[str, float]] = {}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.buildah.close()
        if self.dockerd is not None:
            self.dockerd.stop()

    def schedule(self, cases: list[Case]) -> None:
        for case in cases:
            if case.name not in self.futures:
                self.futures[case.name] = self.pool.submit(self._build_all, case)

    def outcomes(self, case: Case) -> dict[str, Outcome]:
        self.schedule([case])
        return self.futures[case.name].result()

    def _build_all(self, case: Case) -> dict[str, Outcome]:
        out, times = {}, {}
        for name in ("kiln", "buildah", "buildkit"):
            if name == "buildkit" and self.dockerd is None:
                continue
            # a context of its own for each builder: a builder that writes into it (buildah's
            # rw bind mounts do) must not change what the next one sees
            dest = self.work / "cases" / case.name / name
            dest.mkdir(parents=True)
            ctx = prepare_context(case, dest)
            flags = [f.replace("{ctx}", str(ctx)) for f in case.flags]
            t0 = time.monotonic()
            try:
                out[name] = self._build_one(name, case, ctx, flags)
            except (subprocess.SubprocessError, RuntimeError, OSError) as e:
                detail = getattr(e, "stderr", None) or b""
                out[name] = Outcome(False, f"the image could not be read: {e} {detail!r}")
            times[name] = time.monotonic() - t0
        self.timings[case.name] = times
        return out

    def _build_one(self, name, case, ctx, flags) -> Outcome:
        tag = f"localhost/diff-{case.name.replace('_', '-')}:latest"
        try:
            if name == "kiln":
                res = self.kiln.build(ctx, ["--format", "docker", "--network", "none", *flags],
                                      tag=tag)  # fmt: skip
            elif name == "buildah":
                res = self.buildah.build(ctx, ["--format", "docker", "--network", "none", *flags],
                                         tag=tag)  # fmt: skip
            else:
                tag = tag.removeprefix("localhost/")
                res = self.dockerd.build(ctx, flags, tag=tag)
        except subprocess.TimeoutExpired as e:
            return Outcome(False, f"timed out after {e.timeout}s")
        log = (res.stdout or b"").decode(errors="replace") + (res.stderr or b"").decode(
            errors="replace"
        )
        if res.returncode != 0:
            return Outcome(False, log)
        if name == "kiln":
            probe = self.kiln.probe(tag)
        elif name == "buildah":
            # no `buildah rmi` here: it removes cached layers concurrent builds are using
            probe = self.buildah.probe(tag)
        else:
            probe = self.dockerd.probe(tag)
            self.dockerd.remove(tag)
        out = snapshot(probe, self.base_files, self.base_history, name)
        out.log = log
        return out

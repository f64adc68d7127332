"""Property: however a context's symlinks are laid out, resolving a source never leaves it.

Random trees of directories, files and symlinks (absolute, relative, ``..``-laden, chained,
looping, pointing at a sibling "outside" directory whose files hold a canary) are built
next to that outside directory; random source paths are then resolved by the in-root
resolver (openat2 and the O_NOFOLLOW walk must agree, and stay inside), and digested and
staged by ``BuildContext``: nothing read may come from outside.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.archive.safe_root import SafeRoot
from kiln.build.context import BuildContext
from kiln.errors import KilnError
from kiln.util.inroot import openat2_available

CANARY = b"OUTSIDE-CANARY"
NAMES = ["a", "b", "c"]

component = st.sampled_from(NAMES + ["..", "."])
rel_target = st.lists(component, min_size=1, max_size=4).map("/".join)
target = st.one_of(
    rel_target,
    rel_target.map(lambda t: "/" + t),  # absolute: in-root it is the context's root
    st.just("{outside}"),  # the host path of the outside directory
    rel_target.map(lambda t: "{outside}/" + t),
    st.just("/"),
    st.just(".."),
)
node = st.one_of(st.just(("dir",)), st.just(("file",)), target.map(lambda t: ("link", t)))
tree = st.dictionaries(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=2).map("/".join),
    node,
    min_size=1,
    max_size=8,
)
source = st.lists(st.sampled_from(NAMES + [".."]), min_size=1, max_size=4).map("/".join)


def _build(root: str, outside: str, spec: dict) -> None:
    for rel, what in sorted(spec.items(), key=lambda kv: kv[0].count("/")):
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent) or os.path.islink(parent):
            continue  # a parent is a file or a link: skip (keeps the builder simple)
        if os.path.lexists(path):
            continue
        if what[0] == "dir":
            os.mkdir(path)
        elif what[0] == "file":
            with open(path, "wb") as f:
                f.write(b"inside " + rel.encode())
        else:
            os.symlink(what[1].replace("{outside}", outside), path)


def _outside(base: str) -> str:
    """Canary files around the context ``<base>/a``: ``../b``, ``../c/a``, ``/<base>/c/c/a``
    are all outside it, while ``../a/...`` comes back in."""
    for rel in ["c", "c/c"]:
        os.makedirs(os.path.join(base, rel), exist_ok=True)
    for rel in ["b", "c/a", "c/b", "c/c/a"]:
        with open(os.path.join(base, rel), "wb") as f:
            f.write(CANARY + rel.encode())
    return base


def _outside_digests(outside: str) -> set[str]:
    out = set()
    for rel in ["b", "c/a", "c/b", "c/c/a"]:
        with open(os.path.join(outside, rel), "rb") as f:
            out.add("sha256:" + hashlib.sha256(f.read()).hexdigest())
    return out


def _resolve(
    root: str, rel: str, use_openat2: bool, beneath: bool = False
) -> tuple[str, str | None]:
    """("ok", real path) or ("error", errno name); ``beneath``: a regular file's, refusing
    links that leave the root (EXDEV)."""
    with SafeRoot(root, use_openat2=use_openat2) as sr:
        try:
            if beneath:
                fd = sr.open_regular(rel, follow=True, beneath=True)
            else:
                fd = sr.open_path(rel, follow=True)
        except OSError as exc:
            return "error", errno.errorcode.get(exc.errno or 0, "?")
        try:
            return "ok", os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)


@settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    spec=tree,
    paths=st.lists(source, min_size=1, max_size=4),
    patterns=st.lists(
        st.sampled_from(["*.md", "a", "!a/b", "**/c", "b/*", "!b/c", "c"]), max_size=3
    ),
)
@example(
    spec={"b": ("link", "..")}, paths=["b/b", "b/c"], patterns=["*.md"]
)  # relative, through a dir link
@example(
    spec={"c": ("link", "{outside}/c")}, paths=["c/a", "c/c"], patterns=["*.md"]
)  # absolute host path
@example(
    spec={"a": ("link", "b"), "b": ("link", "../c")}, paths=["a/b"], patterns=["*.md"]
)  # a chain
def test_sources_resolve_and_read_only_inside_the_context(spec, paths, patterns):
    with tempfile.TemporaryDirectory(prefix="kiln-prop-") as base:
        outside = _outside(base)
        root = os.path.join(base, "a")
        os.mkdir(root)
        _build(root, outside, spec)
        real_root = os.path.realpath(root)
        modes = [False] + ([True] if openat2_available() else [])
        for rel in paths:
            results = [_resolve(root, rel, mode) for mode in modes]
            for kind, where in results:
                if kind == "ok":
                    assert where == real_root or where.startswith(real_root + "/"), (rel, where)
            assert all(r == results[0] for r in results), (rel, results)  # both resolvers agree
            beneath = [_resolve(root, rel, mode, beneath=True) for mode in modes]
            for kind, where in beneath:
                if kind == "ok":
                    assert where.startswith(real_root + "/"), (rel, where)
            assert all(r == beneath[0] for r in beneath), (rel, beneath)

        canaries = _outside_digests(outside)
        with BuildContext(root, list(patterns)) as ctx:  # ignore files change the walk
            for rel in paths:
                try:
                    ctx.digest([rel])
                    with ctx.staged([rel]) as staged:
                        for dirpath, _dirs, files in os.walk(staged):
                            for name in files:
                                full = os.path.join(dirpath, name)
                                if os.path.islink(full):
                                    continue
                                with open(full, "rb") as f:
                                    assert CANARY not in f.read(), (rel, full)
                except KilnError:
                    pass  # refused (missing, dangling, outside): fine
            assert not {d for _k, d in ctx._memo.values()} & canaries

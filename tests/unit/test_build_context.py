"""The build context: wildcard sources, ignore files, content digests, staging; cache keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.build import context as context_module
from kiln.build.cache_key import instruction_fields, step_key
from kiln.build.context import BuildContext
from kiln.build.instructions import Copy, Run
from kiln.build.mounts import parse_mount
from kiln.errors import NotFound


class CountingCache:
    """A checksum cache that counts the files it was given (per-file and per-directory)."""

    def __init__(self):
        self.data, self.gets, self.puts, self.index = {}, 0, 0, {}

    def get_context_index(self, root):
        return self.index.get(root)

    def put_context_index(self, root, chunks):
        self.index[root] = b"".join(chunks)

    def get_checksum(self, path, st):
        self.gets += 1
        return self.data.get((path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))

    def put_checksum(self, path, st, digest):
        self.puts += 1
        self.data[(path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)] = digest


@pytest.fixture
def trust_fresh_files(monkeypatch):
    """Files written by the test a moment ago are "racy" (see kiln.build.context): their
    checksums would not be cached at all; these tests are about the cache itself."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)


@pytest.fixture
def tree(tmp_path):
    for rel, text in {"a.txt": "a", "b.txt": "b", "src/x.py": "x", "src/y.log": "y",
                      "node_modules/m/i.js": "i"}.items():  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_expand_wildcards_and_ignore(tree):
    ctx = BuildContext(str(tree), ["node_modules", "*.log", "!src/y.log"])
    assert ctx.expand("*.txt") == ["a.txt", "b.txt"]
    with pytest.raises(NotFound):
        ctx.expand("node_modules/m/i.js")
    # ``..`` is cleaned as if the context were / (buildah, BuildKit): never beside it
    with pytest.raises(NotFound):
        ctx.expand("../outside")
    assert ctx.expand("../a.txt") == ["a.txt"]
    walked = [rel for rel, _ in ctx.walk("")]
    assert "node_modules" not in walked and "src/y.log" in walked


@pytest.fixture
def reads(monkeypatch):
    """The context files read (hashed) so far."""
    seen: list[str] = []
    real = BuildContext._hash_file

    def spy(self, rel, *args, **kwargs):
        seen.append(rel)
        return real(self, rel, *args, **kwargs)

    monkeypatch.setattr(BuildContext, "_hash_file", spy)
    return seen


def test_digest_uses_content_not_mtime_and_the_checksum_cache(tree, trust_fresh_files, reads):
    cache = CountingCache()
    ctx = BuildContext(str(tree), [], checksums=cache)
    first = ctx.digest(["src"])
    assert sorted(reads) == ["src/x.py", "src/y.log"]
    again = BuildContext(str(tree), [], checksums=cache).digest(["src"])
    assert again == first and len(reads) == 2  # unchanged files are not read again
    os.utime(tree / "src/x.py", (1, 1))
    assert BuildContext(str(tree), [], checksums=cache).digest(["src"]) == first
    assert len(reads) == 3  # its ctime moved: read again
    (tree / "src/x.py").write_text("changed")
    assert BuildContext(str(tree), [], checksums=cache).digest(["src"]) != first
    assert reads[3:] == ["src/x.py"]  # the other file of the directory is not read again
    assert ctx.digest(["a.txt"]) != ctx.digest(["b.txt"])
    assert ctx.digest(["src"], ["*.log"]) != ctx.digest(["src"])


def test_staged_holds_only_what_may_be_copied(tree):
    ctx = BuildContext(str(tree), ["**/*.log"])
    with ctx.staged(["src", "a.txt"]) as root:
        assert sorted(os.listdir(root)) == ["a.txt", "src"]
        assert os.listdir(os.path.join(root, "src")) == ["x.py"]
    assert BuildContext(str(tree)).needs_staging() is False


def test_cache_key_ignores_line_numbers_but_not_content_or_args():
    a = Copy(1, "COPY a /b", ("a",), "/b")
    moved = Copy(9, "COPY  a   /b", ("a",), "/b")
    assert step_key("p", a) == step_key("p", moved)
    assert step_key("p", a) != step_key("q", a)
    assert step_key("p", a, files={"context": "1"}) != step_key("p", a, files={"context": "2"})
    run = Run(2, "RUN x", ("x",))
    assert step_key("p", run, args={"V": "1"}) != step_key("p", run, args={"V": "2"})


def test_cache_keys_stay_those_earlier_builds_stored():
    """A key is a stored name: an unchanged step must hash as it did, or every cache
    entry an earlier kiln wrote would miss."""
    a = Copy(1, "COPY a /b", ("a",), "/b")
    parts = dict(args={"V": "1"}, files={"context": "sha256:00"}, from_images={"0": "sha256:11"},
                 settings={"format": "oci", "timestamp": 0}, extra={"labels": {"a": "b"}})  # fmt: skip
    want = "sha256:ddfc933754ea7d22b025465042d147bb7ba8537ccf6b29f4b0b25bead85fff04"
    assert step_key("p", a, **parts) == want
    assert step_key("p", a) == (
        "sha256:51146123cfa40ab1c8b37f75116fe59bb0a38dfcd702e97c7bf9ba1cdb3baddb"
    )
    with pytest.raises(TypeError, match="unknown key parts"):
        step_key("p", a, file={"context": "1"})  # type: ignore[call-arg]


def test_cache_key_takes_only_the_id_and_target_of_a_secret_mount():
    mount = parse_mount("type=secret,id=tok,target=/s,mode=0444")
    run = Run(2, "RUN x", ("x",), mounts=(mount,))
    fields = instruction_fields(run)["mounts"][0]
    assert set(fields) <= {"@", "type", "id", "target", "env", "required"}
    assert fields["id"] == "tok" and fields["target"] == "/s"


def test_a_real_store_answers_the_whole_context_from_its_index(
    tree, tmp_path_factory, trust_fresh_files, reads
):
    """A rebuild of an unchanged context reads no file and asks SQLite nothing: the
    per-directory index (one file in the store) answers it; a sibling context whose path
    shares the prefix has its own."""
    from kiln.store import Store

    store = Store.open(str(tmp_path_factory.mktemp("kiln-store")))
    first = BuildContext(str(tree), [], checksums=store).digest(["."])
    assert len(reads) == 5
    sibling = tree.parent / (tree.name + "-sibling")
    sibling.mkdir()
    (sibling / "a.txt").write_text("other")
    BuildContext(str(sibling), [], checksums=store).digest(["."])
    queries = []
    store.db.conn.set_trace_callback(queries.append)
    again = BuildContext(str(tree), [], checksums=store).digest(["."])
    store.db.conn.set_trace_callback(None)
    assert again == first and len(reads) == 6
    assert not [q for q in queries if "checksum_cache" in q]
    (tree / "a.txt").write_text("changed")
    assert BuildContext(str(tree), [], checksums=store).digest(["."]) != first
    assert reads[6:] == ["a.txt"]


def test_a_damaged_index_is_ignored_not_trusted(tree, tmp_path_factory, trust_fresh_files, reads):
    from kiln.store import Store

    store = Store.open(str(tmp_path_factory.mktemp("kiln-store")))
    first = BuildContext(str(tree), [], checksums=store).digest(["."])
    data = bytearray(store.get_context_index(str(tree)))
    data[-40] ^= 0xFF  # a flipped bit inside a stored line
    store.put_context_index(str(tree), [bytes(data)])
    assert BuildContext(str(tree), [], checksums=store).digest(["."]) == first
    assert len(reads) == 10  # everything read again


def test_explain_manifest_from_the_index_names_every_entry(tree, trust_fresh_files):
    cache = CountingCache()
    first = BuildContext(str(tree), [], checksums=cache)
    digest = first.digest(["."])
    again = BuildContext(str(tree), [], checksums=cache)
    assert again.digest(["."]) == digest
    assert again.manifest(digest) == first.manifest(digest)
    assert set(again.manifest(digest)) == {".", "a.txt", "b.txt", "src", "src/x.py",
                                           "src/y.log", "node_modules", "node_modules/m",
                                           "node_modules/m/i.js"}  # fmt: skip


def test_explain_manifest_names_odd_paths_and_gives_up_past_its_cap(
    tmp_path, trust_fresh_files, monkeypatch
):
    (tmp_path / "two\nlines.txt").write_text("a")  # a name with a newline in it
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("b")
    cache = CountingCache()
    for ctx in (BuildContext(str(tmp_path), [], checksums=cache),) * 2:  # indexed the 2nd time
        digest = ctx.digest(["."])
        manifest = ctx.manifest(digest)
        assert set(manifest) == {".", "two\nlines.txt", "d", "d/f"}
        assert manifest["d/f"].startswith("file 644 ")
    monkeypatch.setattr(context_module, "MAX_MANIFEST_ENTRIES", 3)
    ctx = BuildContext(str(tmp_path), [], checksums=cache)
    assert ctx.manifest(ctx.digest(["."])) is None  # four entries: too many to name


@pytest.fixture
def linked(tmp_path):
    """A context beside an "outside" directory, with links out and a link inside."""
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "secret").write_text("OUTSIDE")
    (outside / "d" / "f").write_text("OUTSIDE-D")
    ctx = tmp_path / "ctx"
    (ctx / "real").mkdir(parents=True)
    (ctx / "real" / "x").write_text("inside")
    (ctx / "out").symlink_to(outside)
    (ctx / "rel").symlink_to("../outside/secret")
    (ctx / "lin").symlink_to("real")
    (ctx / "abs-in").symlink_to("/real/x")  # absolute: the context's /real/x
    return ctx


def test_sources_through_links_out_are_not_found(linked):
    ctx = BuildContext(str(linked), ["*.md"])
    for src in ("out/secret", "out/d", "out/*", "rel", "out"):
        with pytest.raises(NotFound):
            ctx.expand(src)
        with pytest.raises(NotFound):
            ctx.digest([src])
        with pytest.raises(NotFound), ctx.staged([src]):
            pass


def test_a_named_link_is_followed_inside_and_links_below_stay_links(linked):
    ctx = BuildContext(str(linked), ["*.md"])
    with ctx.staged(["lin", "abs-in", "."]) as root:
        assert os.path.isdir(os.path.join(root, "lin")) and not os.path.islink(
            os.path.join(root, "lin")
        )
        assert Path(root, "lin", "x").read_text() == "inside"
        assert Path(root, "abs-in").read_text() == "inside"
        assert os.readlink(os.path.join(root, "out")) == str(linked.parent / "outside")
        assert os.readlink(os.path.join(root, "rel")) == "../outside/secret"


def test_the_cache_key_does_not_move_with_what_links_point_at(linked):
    first = BuildContext(str(linked)).digest(["."])
    (linked.parent / "outside" / "secret").write_text("CHANGED")
    (linked.parent / "outside" / "new").write_text("NEW")
    assert BuildContext(str(linked)).digest(["."]) == first

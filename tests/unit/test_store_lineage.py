"""kiln.store.lineage: an image's Parent found by index, as podman decides it, whatever the
number of images, in stores made before the index too."""

from __future__ import annotations

import sqlite3

import pytest
from ops_image_factory import layer_tar, make_image

from kiln.image import register_image
from kiln.image.inspect import inspect_image
from kiln.oci import Descriptor, Digest, History, ImageConfig, Manifest
from kiln.oci import media_types as mt
from kiln.store import Store
from sql_trace import statements_during

T = 1_750_000_000  # one build: every step carries the same history entries
# a store as kiln wrote it before schema V10
_BEFORE_V10 = (
    "DROP INDEX images_parent_search; DROP INDEX images_parent_keys_missing; ALTER TABLE images DROP COLUMN parent_keys;"
    "CREATE INDEX images_lineage ON images(history_key, top_chain, added, id);"
)


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def parent(store, rec) -> str:
    return inspect_image(store, rec.id)["Parent"]


def bare(rec) -> str:
    return rec.id.removeprefix("sha256:")


def test_the_longest_history_prefix_wins_among_siblings_on_one_base(store):
    base = make_image(store, ["a"], created=T)
    siblings = [
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV I={i}",)) for i in range(5)
    ]
    child = make_image(store, ["a"], created=T, metadata_steps=("ENV I=3", "CMD x"))
    assert parent(store, child) == bare(siblings[3])
    assert parent(store, siblings[0]) == bare(base)
    assert parent(store, base) == ""
    grandchild = make_image(store, ["a", "b"], created=T, metadata_steps=())
    assert parent(store, grandchild) == bare(base)


def test_layers_without_the_history_make_no_parent(store):
    """podman's rule: an image whose history does not extend another's is not its child,
    whatever layers they share (a rewritten history, another build of the same layers)."""
    make_image(store, ["a"], created=T)
    mid = make_image(store, ["a", "b"], created=T)
    top = make_image(store, ["a", "b", "c"], created=T + 60)  # other history: no history prefix
    assert parent(store, top) == ""
    assert store.children_of(mid.id) == []


def test_a_parent_is_one_layer_below_at_most(store):
    """podman looks for a parent on the image's top layer and the one below it: an image
    two layers up from its nearest ancestor has none."""
    base = make_image(store, ["a"], created=T)
    two_up = make_image(store, ["a", "b", "c"], created=T)
    assert parent(store, two_up) == ""
    assert store.children_of(base.id) == []
    one_up = make_image(store, ["a", "b"], created=T)
    assert parent(store, two_up) == bare(one_up) and parent(store, one_up) == bare(base)
    assert store.children_of(base.id) == [one_up.id]
    assert store.children_of(one_up.id) == [two_up.id]


def test_links_are_the_parents_inspect_finds(store):
    base = make_image(store, ["a"], created=T)
    labelled = make_image(store, ["a"], created=T, metadata_steps=("LABEL x=1",))
    step = make_image(store, ["a", "b"], created=T)
    final = make_image(store, ["a", "b"], created=T, metadata_steps=("CMD x",))
    other = make_image(store, ["a", "b"], created=T + 60)  # another history on the same layers
    parents, with_children = store.parent_links()
    for rec in (base, labelled, step, final, other):
        assert parents.get(rec.id, "").removeprefix("sha256:") == parent(store, rec)
    assert parents == {labelled.id: base.id, step.id: base.id, final.id: step.id}
    assert with_children == {base.id, step.id}
    # a child is any image it is a parent of, not only those it is the nearest parent of
    assert store.children_of(base.id) == sorted([labelled.id, step.id, final.id])


def test_same_layers_and_history_is_not_a_parent(store):
    one = make_image(store, ["a"], created=T, labels={"x": "1"})
    two = make_image(store, ["a"], created=T, labels={"x": "2"})
    assert parent(store, one) == "" and parent(store, two) == ""


def test_inspect_runs_the_same_queries_with_10_or_200_images(store):
    """O(1) in the image count: the statements inspect runs do not grow with the store."""
    base = make_image(store, ["a"], created=T)

    def statements(name: str) -> int:
        def work() -> None:
            assert inspect_image(store, name)["Parent"] == bare(base)

        return len(statements_during(store, work))

    for i in range(10):
        make_image(store, ["a"], [f"img{i}"], created=T, metadata_steps=(f"ENV I={i}",))
    few = statements("img5")
    for i in range(10, 200):
        make_image(store, ["a"], [f"img{i}"], created=T, metadata_steps=(f"ENV I={i}",))
    assert statements("img5") == few


def test_a_store_from_before_the_index_gets_it_on_open(tmp_path):
    root = str(tmp_path / "root")
    s = Store.open(root)
    base = make_image(s, ["a"], created=T)
    make_image(s, ["a"], created=T, metadata_steps=("ENV I=1",))
    child = make_image(s, ["a", "b"], created=T, metadata_steps=("ENV I=1",))
    s.close()
    conn = sqlite3.connect(f"{root}/kiln.db", isolation_level=None)
    conn.executescript(
        f"{_BEFORE_V10}DROP INDEX image_layers_blob_missing; DROP INDEX images_top_chain;"
        "DROP INDEX images_lineage; ALTER TABLE images DROP COLUMN top_chain;"
        "ALTER TABLE images DROP COLUMN layer_count; ALTER TABLE images DROP COLUMN history_key;"
        "PRAGMA user_version = 5;"  # before V6, the lineage columns
    )
    conn.close()
    s = Store.open(root)
    try:
        assert s.db.one("SELECT COUNT(*) FROM images WHERE history_key IS NULL")[0] == 0
        assert parent(s, child) == bare(base)  # the ENV I=1 sibling has other layers
    finally:
        s.close()


def _traced(store, name: str) -> list[str]:
    return statements_during(store, lambda: inspect_image(store, name))


def test_every_statement_of_an_inspect_searches_an_index(store):
    """No statement an inspect runs scans a table or sorts what it found, whichever way the
    parent is found (by history, by layers) and whatever the image is named by."""
    base = make_image(store, ["a"], ["base"], created=T)
    make_image(store, ["a"], ["env"], created=T, metadata_steps=("ENV I=1",))
    make_image(store, ["a", "b"], ["child"], created=T, metadata_steps=("ENV I=1",))
    make_image(store, ["a", "b", "c"], ["other"], created=T + 60)  # parent by layers only
    for i in range(30):  # enough rows that SQLite's planner prefers an index where one fits
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV J={i}",))
    names = ["base", "env", "child", "other", bare(base), bare(base)[:12]]
    statements = [s for name in names for s in _traced(store, name)]
    assert statements
    conn = store.db.conn
    for sql in statements:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        assert not [p for p in plan if p.startswith("SCAN") or "TEMP B-TREE" in p], (sql, plan)


def test_images_sharing_its_history_with_other_layers_cost_an_inspect_nothing(store):
    """Every rebuild of one Dockerfile with another context has the same history and other
    layers: none is a parent of another, and an inspect does not read them one by one."""
    for i in range(10):
        make_image(store, ["a", "b"], size=20 + i, created=T)
    child = make_image(store, ["a", "b"], ["child"], size=25, created=T, metadata_steps=("CMD x",))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    def work() -> int:
        nonlocal steps
        steps = 0
        store.db.conn.set_progress_handler(count, 1)  # one call per SQLite VM instruction
        try:
            found = inspect_image(store, "child")["Parent"]
        finally:
            store.db.conn.set_progress_handler(None, 1)
        assert found and found != bare(child)
        return steps

    few = work()
    for i in range(10, 200):
        make_image(store, ["a", "b"], size=20 + i, created=T)
    assert work() <= few + 10


def test_images_on_its_layers_with_other_histories_cost_an_inspect_nothing(store):
    """A store of images FROM one base, each one metadata step more (ENV I=n): they all
    have the base's top layer, and an inspect of one does not read its siblings."""
    base = make_image(store, ["a"], created=T)
    for i in range(10):
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV I={i}",))
    make_image(store, ["a"], ["child"], created=T, metadata_steps=("ENV I=child",))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    def work() -> int:
        nonlocal steps
        steps = 0
        store.db.conn.set_progress_handler(count, 1)  # one call per SQLite VM instruction
        try:
            assert inspect_image(store, "child")["Parent"] == bare(base)
        finally:
            store.db.conn.set_progress_handler(None, 1)
        return steps

    few = work()
    for i in range(10, 200):
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV I={i}",))
    assert work() <= few + 10


def _image(store, layers: list[str], history: list[tuple[str, bool]]):
    """An image whose history is ``(created_by, empty_layer)`` entries, as given."""
    blobs = [layer_tar(n) for n in layers]
    descs = [Descriptor(mt.OCI_LAYER, store.put_bytes(b), len(b)) for b in blobs]
    when = "2025-06-15T00:00:00Z"
    config = ImageConfig(
        created=when,
        architecture="amd64",
        os="linux",
        diff_ids=tuple(str(Digest.of_bytes(b)) for b in blobs),
        history=tuple(History(created=when, created_by=c, empty_layer=e) for c, e in history),
    )
    raw = config.to_bytes()
    cdesc = Descriptor(mt.OCI_CONFIG, store.put_bytes(raw), len(raw))
    return register_image(store, Manifest.build(mt.OCI_MANIFEST, cdesc, descs), config, [])


def test_a_history_that_does_not_count_the_layers_still_finds_its_parent(store):
    """A squashed base keeps the entries of the layers it merged: its history says two
    layers where it has one, and so does every image built on it."""
    squashed = [("ADD a", False), ("RUN make", False)]
    base = _image(store, ["a"], squashed)
    _image(store, ["a", "x"], [*squashed, ("ADD x", False)])  # a sibling, not a parent
    mid = _image(store, ["a"], [*squashed, ("ENV I=1", True)])
    child = _image(store, ["a", "b"], [*squashed, ("ENV I=1", True), ("ADD b", False)])
    assert parent(store, mid) == bare(base)
    assert parent(store, child) == bare(mid)


def test_a_history_of_hundreds_of_entries_finds_its_parent(store):
    steps = tuple(f"ENV I{i}=1" for i in range(600))
    base = make_image(store, ["a"], created=T, metadata_steps=steps)
    child = make_image(store, ["a"], created=T, metadata_steps=(*steps, "CMD x"))
    assert parent(store, child) == bare(base)


def _older_store(root: str, downgrade: str):
    """A store at ``root`` holding a base and its child, then taken back by the SQL
    ``downgrade`` to what an older kiln wrote; (base, child), the store closed."""
    s = Store.open(root)
    base = make_image(s, ["a"], created=T)
    child = make_image(s, ["a"], created=T, metadata_steps=("ENV I=1",))
    s.close()
    conn = sqlite3.connect(f"{root}/kiln.db", isolation_level=None)
    conn.executescript(downgrade)
    conn.close()
    return base, child


def test_a_v8_store_loses_its_history_index_and_finds_parents(tmp_path):
    root = str(tmp_path / "root")
    base, child = _older_store(
        root,
        f"{_BEFORE_V10}DROP INDEX images_lineage;"
        "CREATE INDEX images_history_key ON images(history_key); PRAGMA user_version = 8;",
    )
    s = Store.open(root)
    try:
        indexes = {r[0] for r in s.db.query("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "images_history_key" not in indexes  # V9 dropped it, V10 its successor
        assert "images_lineage" not in indexes and "images_parent_keys_missing" in indexes
        assert parent(s, child) == bare(base)
    finally:
        s.close()


def test_a_v9_store_gets_the_parent_keys_on_open(tmp_path):
    root = str(tmp_path / "root")
    base, child = _older_store(root, f"{_BEFORE_V10}PRAGMA user_version = 9;")
    s = Store.open(root)
    try:
        assert s.db.one("SELECT COUNT(*) FROM images WHERE parent_keys IS NULL")[0] == 0
        assert s.parent_links() == ({child.id: base.id}, {base.id})
        assert s.children_of(base.id) == [child.id] and parent(s, child) == bare(base)
    finally:
        s.close()


def test_history_keys_are_the_digests_of_canonical_entries():
    """The keys stored since V6 hash ``canonical(entry.to_json())``: the written-out
    encoding must give the same bytes for every entry, or parents stop being found."""
    import hashlib
    import itertools

    from kiln.oci.strict_json import canonical
    from kiln.store.lineage import keys_of

    texts = ["", "x", 'RUN echo "hi" \\ there', "ENV A=é\u2028b\tc\n\x00\x1f", "日本 🐳", "/"]
    entries = [
        History(created=c, created_by=b, author=a, comment=m, empty_layer=e)
        for c, b, a, m, e in itertools.product(texts[:3], texts, texts[2:4], texts[3:], (0, 1))
    ]
    entries.append(History(created=17, created_by=["odd"], empty_layer=True))  # type: ignore[arg-type]
    key = hashlib.sha256(b"").hexdigest()
    expected = [key]
    for entry in entries:
        key = hashlib.sha256(key.encode() + canonical(entry.to_json())).hexdigest()
        expected.append(key)
    assert keys_of(entries) == expected

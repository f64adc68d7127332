"""The layer cache and reproducible builds (root, runc, busybox)."""

from __future__ import annotations

import os
import time

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a
COPY b.txt /b.txt
RUN echo done
"""


def _hits(env) -> int:
    return len(env.messages("cache"))


def test_second_build_is_all_cache_hits(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    first = build_env.build(ctx, DOCKERFILE, tags=["c1"])
    assert _hits(build_env) == 0
    second = build_env.build(ctx, DOCKERFILE, tags=["c1"])
    assert second.image_id == first.image_id
    assert _hits(build_env) == 5  # every layer step; the last one is the image
    # what a script reads of it (steps were always 0)
    assert (first.steps, first.cache_hits, second.steps, second.cache_hits) == (6, 0, 6, 5)
    hits = build_env.messages("cache")
    assert all(h.startswith("--> Using cache ") and len(h.split()[-1]) == 64 for h in hits)


def test_changed_file_invalidates_its_step_and_later_ones_only(build_env, tmp_path):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    build_env.build(ctx, DOCKERFILE)
    (tmp_path / "ctx" / "b.txt").write_text("changed\n")
    build_env.events.events.clear()
    result = build_env.build(ctx, DOCKERFILE, tags=["c2"])
    steps = [e for e in build_env.events.events if e.data.get("type") in ("step", "cache", "layer")]
    hit_after = [
        steps[i - 1].message.split(": ", 1)[1]
        for i, e in enumerate(steps)
        if e.data.get("type") == "cache" and steps[i - 1].data.get("type") == "step"
    ]
    assert hit_after == ["RUN echo one > /one", "COPY a.txt /a.txt", "RUN cat /a.txt > /copy-of-a"]
    assert build_env.files("c2")["b.txt"] == b"changed\n"
    assert result.cache_hits == 3


def test_touching_a_file_keeps_the_cache(build_env, tmp_path):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    first = build_env.build(ctx, DOCKERFILE)
    path = tmp_path / "ctx" / "a.txt"
    os.utime(path, (time.time() + 100, time.time() + 100))
    second = build_env.build(ctx, DOCKERFILE)
    assert second.image_id == first.image_id


def test_build_arg_change_invalidates_run(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nARG V=1\nRUN echo $V > /v\n"
    build_env.build(ctx, text, tags=["arg"])
    build_env.build(ctx, text, tags=["arg"], build_args={"V": "2"})
    assert build_env.files("arg")["v"] == b"2\n"


def test_no_cache_rebuilds_and_layers_false_gives_one_layer(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    build_env.build(ctx, DOCKERFILE)
    build_env.events.events.clear()
    build_env.build(ctx, DOCKERFILE, no_cache=True, tags=["nc"])
    assert _hits(build_env) == 0
    base_layers = len(build_env.image("busybox").layers)
    # RUN echo done changes nothing and still gets its (empty) layer, as buildah and BuildKit
    nc = build_env.validate("nc")
    assert len(nc.layers) == base_layers + 5
    assert not nc.config.history[-1].empty_layer
    assert nc.config.history[-1].created_by.endswith("echo done")
    build_env.build(ctx, DOCKERFILE, layers=False, tags=["flat"])
    flat = build_env.validate("flat")
    assert len(flat.layers) == base_layers + 1
    assert build_env.files("flat")["copy-of-a"] == b"a\n"
    build_env.build(ctx, DOCKERFILE, squash_all=True, tags=["all"])
    assert len(build_env.validate("all").layers) == 1


def test_cache_outlives_the_process(build_env):  # noqa: F811
    from kiln.ops.context import Context
    from kiln.store import Store

    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    first = build_env.build(ctx, DOCKERFILE)
    other = Store.open(build_env.store.root)  # a new handle, as a new process would open
    try:
        build_env.ctx = Context(store=other, events=build_env.events)
        build_env.events.events.clear()
        assert build_env.build(ctx, DOCKERFILE).image_id == first.image_id
        assert _hits(build_env) == 5
    finally:
        other.close()


def test_timestamp_builds_are_reproducible(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    first = build_env.build(ctx, DOCKERFILE, timestamp=1_600_000_000, no_cache=True)
    time.sleep(1.1)
    second = build_env.build(ctx, DOCKERFILE, timestamp=1_600_000_000, no_cache=True)
    assert first.image_id == second.image_id
    assert first.manifest_digest == second.manifest_digest
    img = build_env.validate(first.image_id)
    assert img.config.created == "2020-09-13T12:26:40Z"
    plain = build_env.build(ctx, DOCKERFILE, no_cache=True)
    assert plain.image_id != first.image_id


def test_a_fully_cached_rebuild_writes_one_transaction(build_env, monkeypatch):  # noqa: F811
    """A rebuild that changes nothing takes the store's write lock once, for its build
    record and event: no lease row, no per-step cache touch, no trim, no re-tag."""
    import kiln.store.cache
    import kiln.util.sqlite

    ctx = build_env.context_dir(files={"a.txt": "a\n", "b.txt": "b\n"})
    first = build_env.build(ctx, DOCKERFILE, tags=["c1"])
    # the first build's entries count as just used, however long that build took
    monkeypatch.setattr(kiln.store.cache, "TOUCH_AFTER", 3600.0)
    seen: list[str] = []
    connect = kiln.util.sqlite.connect

    def traced(path: str):
        conn = connect(path)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(kiln.util.sqlite, "connect", traced)  # a step thread's connection
    db = build_env.store.db
    for conn in db._all:
        conn.set_trace_callback(seen.append)
    try:
        second = build_env.build(ctx, DOCKERFILE, tags=["c1"])
    finally:
        for conn in db._all:
            conn.set_trace_callback(None)
    assert second.image_id == first.image_id and _hits(build_env) == 5
    assert second.record_id  # the record is written
    assert [s for s in seen if s.startswith("BEGIN IMMEDIATE")] == ["BEGIN IMMEDIATE"], seen

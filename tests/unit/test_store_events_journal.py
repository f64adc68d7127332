"""The store's image event journal (kiln.store.events) and its reading (kiln.ops.image_events):
bounded, shared between store handles (processes), windows, filters, podman's names."""

from __future__ import annotations

import time

import pytest
from ops_image_factory import make_image

from kiln.api.docker_events import DockerEventFilter, docker_event
from kiln.errors import InvalidArgument
from kiln.ops import image_events as ie
from kiln.ops import images as ops
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.store import Store
from kiln.store import events as journal


@pytest.fixture
def ctx(tmp_path):
    c = Context(store=Store.open(str(tmp_path / "root")), events=ListSink())
    yield c
    c.close()


def test_the_journal_keeps_the_newest_rows_only(ctx, monkeypatch):
    monkeypatch.setattr(journal, "EVENTS_KEPT", 5)
    for n in range(12):
        ctx.store.record_event("tag", f"sha256:{n}", f"n{n}")
    kept = ctx.store.events_after(0)
    assert [e.name for e in kept] == [f"n{n}" for n in range(7, 12)]
    assert ctx.store.last_event_id() == 12


def test_another_handle_on_the_store_sees_the_events(ctx, tmp_path):
    rec = make_image(ctx.store, ["a"], ["app:1"])
    other = Store.open(str(tmp_path / "root"))  # as another kiln process would
    try:
        start = other.last_event_id()
        ops.tag(ctx, "app:1", "app:2")
        ops.remove_images(ctx, ["app:2"])
        found, last = ie.new_events(Context(store=other), start)
        assert [(e.action, e.image, e.name) for e in found] == [
            ("tag", rec.id, "localhost/app:2"),
            ("untag", rec.id, "localhost/app:2"),
        ]
        assert last == other.last_event_id()
    finally:
        other.close()


@pytest.mark.parametrize(
    "remove",
    [
        lambda ctx: ops.untag(ctx, "app:1", "app:2"),
        lambda ctx: ops.remove_images(ctx, ["app:2"]),  # one name of two: an untag
        lambda ctx: ops.remove_images(ctx, ["app:1", "app:2"]),  # the last one: and a delete
        lambda ctx: ops.prune(ctx, all=True),
    ],
    ids=["untag", "rmi-a-name", "rmi-the-image", "prune"],
)
def test_an_untag_is_the_images_event_as_dockerd_and_podman_show_it(ctx, remove):
    # dockerd 20.10: id, Actor.ID and the name attribute are all the image's ID;
    # podman 4.3: the ID, and the name it lost
    rec = make_image(ctx.store, ["a"], ["app:1"])
    ops.tag(ctx, "app:1", "app:2")
    start = ctx.store.last_event_id()
    remove(ctx)
    found, _ = ie.new_events(ctx, start, ie.EventFilter(["event=untag"]))
    assert "localhost/app:2" in [e.name for e in found]
    for ev in found:
        shown = docker_event(ev)
        assert (shown["id"], shown["Actor"]["ID"]) == (rec.id, rec.id)
        assert shown["Actor"]["Attributes"] == {"name": rec.id}
        libpod = ie.libpod_json(ev)
        assert (libpod["id"], libpod["Actor"]["Attributes"]["name"]) == (rec.id, ev.name)
    by_id = DockerEventFilter([f"image={rec.id}", "event=untag"])
    assert all(by_id(ev) for ev in found)


def test_windows_and_filters(ctx):
    make_image(ctx.store, ["a"], ["app:1"])
    t0 = time.time()
    ops.tag(ctx, "app:1", "one:1")
    t1 = time.time()
    time.sleep(0.01)
    ops.tag(ctx, "app:1", "two:1")
    ops.remove_images(ctx, ["two:1", "one:1", "app:1"])
    got, _ = ie.past(ctx, t0, t1)
    assert [e.name for e in got] == ["localhost/one:1"]
    assert ie.past(ctx, None, None)[0] == []  # no since: nothing from before
    deletes, _ = ie.past(ctx, t0, None, ie.EventFilter(["event=remove"]))  # podman's word
    assert [e.action for e in deletes] == ["delete"]
    assert ie.libpod_json(deletes[0])["Action"] == "remove"
    assert ie.docker_json(deletes[0])["Action"] == "delete"
    named, _ = ie.past(ctx, t0, None, ie.EventFilter(["image=two:1"]))
    assert [e.action for e in named] == ["tag", "untag"]
    assert ie.past(ctx, t0, None, ie.EventFilter(["type=container"]))[0] == []
    with pytest.raises(InvalidArgument, match="image events only"):
        ie.EventFilter(["container=x"])


def test_follow_ends_at_until(ctx):
    make_image(ctx.store, ["a"], ["app:1"])
    start = ctx.store.last_event_id()
    ops.tag(ctx, "app:1", "later:1")
    t = time.monotonic()
    got = list(ie.follow(ctx, start, until=time.time() + 0.3, poll=0.05))
    assert [e.name for e in got] == ["localhost/later:1"]
    assert time.monotonic() - t < 5

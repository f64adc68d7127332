"""An image registered (import, load, pull, commit) is reported as written even when
another kiln removes it the moment the store transaction commits: the record comes from
that transaction, not a read-back that finds it gone ("sha256:<id>: image not known"
printed for an import that succeeded)."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
from collections.abc import Callable, Iterator

import pytest

from kiln.image import open_store_image, register_image
from kiln.image.import_tarball import import_tarball
from kiln.ops.containers import commit_container, create_container
from kiln.ops.context import open_context
from kiln.store import Store
from kiln.store.images import normalise_name


def _rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        data = b"kiln\n"
        info.size, info.mtime = len(data), 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "root")) as s:
        yield s


@pytest.fixture
def rmi_after_each_commit(monkeypatch) -> Iterator[Callable[[Store, str], list[str]]]:
    """``(store, name)``: after each outermost transaction of ``store`` commits, a second
    store handle (its own connection, as another kiln process) removes the image ``name``
    names, if any. Returns the IDs it removed (as it removes them)."""
    others: list[Store] = []

    def arm(store: Store, name: str) -> list[str]:
        other = Store.open(store.root)
        others.append(other)
        removed: list[str] = []
        real = store.db.transaction

        @contextlib.contextmanager
        def then_rmi():
            outermost = not store.db.in_transaction
            with real() as conn:
                yield conn
            if outermost:
                rec = other.image_named(normalise_name(name))
                if rec is not None:
                    other.delete_image(rec.id)
                    removed.append(rec.id)

        monkeypatch.setattr(store.db, "transaction", then_rmi)
        return removed

    yield arm
    for other in others:
        other.close()


def test_an_import_removed_at_once_still_reports_its_image(store, rmi_after_each_commit):
    removed = rmi_after_each_commit(store, "base:1")
    rec = import_tarball(store, io.BytesIO(_rootfs()), names=["base:1"])
    assert removed == [rec.id]  # the race happened
    assert rec.names == [normalise_name("base:1")]


def test_a_registration_removed_at_once_still_reports_its_image(store, rmi_after_each_commit):
    # a load's or a pull's registration: the image's blobs are stored, its rows not yet
    with store.lease():
        first = import_tarball(store, io.BytesIO(_rootfs()))
        img = open_store_image(store, first.id)
        store.delete_image(first.id)
        removed = rmi_after_each_commit(store, "again:1")
        rec = register_image(store, img.manifest, img.config, ["again:1"])
    assert removed == [first.id]
    assert (rec.id, rec.names) == (first.id, [normalise_name("again:1")])


def test_a_commit_removed_at_once_still_reports_its_image(tmp_path, rmi_after_each_commit):
    # kiln commit (and each build step): the image's rows and blobs go in one transaction
    with open_context(str(tmp_path / "root")) as ctx:
        create_container(ctx, "scratch", name="wc")
        removed = rmi_after_each_commit(ctx.store, "localhost/done:1")
        rec = commit_container(ctx, "wc", "done:1")
        assert removed == [rec.id]
        assert rec.names == ["localhost/done:1"]

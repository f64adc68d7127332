"""A script or server that calls kiln from a new thread each time (a thread per request or
job) keeps a bounded number of descriptors open: each thread's database connection used to
stay open until the context closed, two descriptors per thread that had ever called."""

from __future__ import annotations

import os
import threading

import kiln

pytest_plugins = ["fixtures_images"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _call_from_a_new_thread(ctx: kiln.Context) -> None:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            kiln.tag_image(ctx, "busybox", "again:1")
            assert kiln.list_images(ctx, references=["again"])
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert not errors, errors


def test_calls_from_many_short_lived_threads_leave_no_descriptors(kiln_store, busybox_image):
    with kiln.open_context(kiln_store.root) as ctx:
        for _ in range(3):
            _call_from_a_new_thread(ctx)
        before = _open_fds()
        for _ in range(40):
            _call_from_a_new_thread(ctx)
        assert _open_fds() <= before + 2  # the last thread's, until another opens one
    with kiln.open_context(kiln_store.root) as ctx:  # every write is there
        assert kiln.image_exists(ctx, "again:1")

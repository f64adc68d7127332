"""``kiln.util.lingering``: one thread serves a build's steps one after another, jobs
submitted together run together, ``close`` ends every thread (bounded), errors are kept."""

from __future__ import annotations

import threading
import time

from kiln.util.lingering import Lingering


def _alive(pool: Lingering) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == pool.name]


def test_one_thread_serves_jobs_one_after_another_and_close_ends_it():
    pool = Lingering("test-lingering-seq", idle=600)
    seen: list[threading.Thread] = []
    for _ in range(5):
        job = pool.submit(lambda: seen.append(threading.current_thread()))
        assert job.wait(20) and job.error is None
    assert len(set(seen)) == 1 and seen[0] is not threading.main_thread()
    assert _alive(pool) == seen[:1]  # waiting for the next job
    pool.close(timeout=20)
    assert _alive(pool) == [] and pool.threads() == []
    job = pool.submit(lambda: None)  # comes back after a close
    assert job.wait(20)
    pool.close(timeout=20)
    assert _alive(pool) == []


def test_jobs_submitted_together_run_together_and_errors_are_kept():
    pool = Lingering("test-lingering-par", idle=600)
    together = threading.Barrier(3, timeout=20)  # passes only if all three wait at once
    jobs = [pool.submit(together.wait) for _ in range(3)]
    assert all(j.wait(20) for j in jobs) and all(j.error is None for j in jobs)

    def fails() -> None:
        raise OSError(5, "disk gone")

    bad = pool.submit(fails)
    assert bad.wait(20) and isinstance(bad.error, OSError)
    pool.close(timeout=20)
    assert _alive(pool) == []


def test_an_idle_thread_ends_by_itself_and_close_is_bounded_by_a_stuck_job():
    pool = Lingering("test-lingering-idle", idle=0.05)
    assert pool.submit(lambda: None).wait(20)
    deadline = time.monotonic() + 20
    while _alive(pool) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _alive(pool) == []
    release = threading.Event()
    stuck = pool.submit(release.wait, 60)
    started = time.monotonic()
    pool.close(timeout=0.2)  # gives up on the stuck job, which goes on
    assert time.monotonic() - started < 10 and not stuck.wait(0)
    release.set()
    assert stuck.wait(20)
    pool.close(timeout=20)
    assert _alive(pool) == []

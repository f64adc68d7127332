"""A build step's store work does not grow with the depth of the image (root, runc).

Each RUN step commits a layer on its image: the SQL statements it issues (the store's
``kiln.db`` and the snapshotter's ``snapshots.db``, counted with SQLite's trace callback)
and the image configs it parses must be the same at step 20 as at step 2, or a build of
n steps costs O(n^2) (the whole layer chain re-inserted, re-leased and re-read per step).
"""

from __future__ import annotations

import sqlite3

import pytest

from build_fixtures import ROOT_MARKS  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build import stage_run
from kiln.oci.config import ImageConfig
from kiln.ops.context import Context
from kiln.ops.events import ListSink
from kiln.store import Store
from kiln.util import sqlite as kiln_sqlite

pytestmark = [*ROOT_MARKS, pytest.mark.slow, pytest.mark.timeout(300)]

STEPS = 20
#: statements a later step may issue beyond step 2's (none are expected: a little room
#: for a step that happens to clear a lease or an expired row)
SLACK = 3
#: the snapshot database's statements a step may issue: the commit's transaction (begin,
#: the layer row, the snapshot moved onto it, commit) and the layer check; the snapshot's
#: own row is known in memory, not asked for again by every mount, upper dir and commit
#: (it was ~10 lookups a step), and so is the next mount's chain (the new layer over the
#: old one's lowers: no query over the whole chain)
SNAPSHOT_STATEMENTS = 5


def test_step_sql_and_parses_flat_in_depth(kiln_store, busybox_image, tmp_path, monkeypatch):  # noqa: F811
    statements: list[str] = []
    snapshot_statements: list[str] = []
    store_statements: list[str] = []
    parses = [0]
    real_connect = kiln_sqlite.connect

    def traced_connect(path: str) -> sqlite3.Connection:
        conn = real_connect(path)
        own = snapshot_statements if str(path).endswith("snapshots.db") else store_statements

        def both(sql: str) -> None:
            statements.append(sql)
            own.append(sql)

        conn.set_trace_callback(both)
        return conn

    monkeypatch.setattr(kiln_sqlite, "connect", traced_connect)
    real_parse = ImageConfig.parse.__func__  # type: ignore[attr-defined]

    def counted_parse(cls, raw):
        parses[0] += 1
        return real_parse(cls, raw)

    monkeypatch.setattr(ImageConfig, "parse", classmethod(counted_parse))
    per_step: list[tuple[int, int]] = []
    snapshot_per_step: list[list[str]] = []
    store_per_step: list[list[str]] = []
    real_step = stage_run.StageRun.layer_step

    def counted_step(self, *args, **kwargs):
        s0, p0 = len(statements), parses[0]
        q0, k0 = len(snapshot_statements), len(store_statements)
        real_step(self, *args, **kwargs)
        per_step.append((len(statements) - s0, parses[0] - p0))
        snapshot_per_step.append(snapshot_statements[q0:])
        store_per_step.append(store_statements[k0:])

    monkeypatch.setattr(stage_run.StageRun, "layer_step", counted_step)

    from kiln.build.options import BuildOptions
    from kiln.ops.build import build

    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    runs = "".join(f"RUN echo {i} > /step{i}\n" for i in range(STEPS))
    (ctx_dir / "Containerfile").write_text(f"FROM busybox\n{runs}")
    store = Store(kiln_store.root)  # opened now, so its connections are traced
    try:
        ctx = Context(store=store, events=ListSink())
        result = build(ctx, BuildOptions(context=str(ctx_dir), tags=["deep"]))
        image = store.get_image(result.image_id)
    finally:
        store.close()

    assert len(image.layers) == len(busybox_image.layers) + STEPS
    assert len(per_step) == STEPS
    first = per_step[1]  # step 1 also starts the working container
    assert first[0] > 0, "no statement was traced: the test measures nothing"
    for number, (count, parsed) in enumerate(per_step[2:], start=3):
        assert count <= first[0] + SLACK, (
            f"step {number} issued {count} SQL statements, step 2 {first[0]}: {per_step}"
        )
        assert parsed <= 1, f"step {number} parsed {parsed} image configs: {per_step}"
    # the bound on --explain's inputs sorts all of them: at most once per build (none when a
    # first read finds nothing past the bounds), never per step
    whole_sorts = [
        sql for sql in statements if "FROM cache_inputs ORDER BY created" in " ".join(sql.split())
    ]
    assert len(whole_sorts) <= 1, whole_sorts
    bound_reads = [sql for sql in statements if "GROUP BY locator HAVING COUNT(*)" in sql]
    assert len(bound_reads) == 1, bound_reads  # the read that finds nothing to trim
    # a step's image, its container moved onto it and its cache entry: one write to kiln.db
    for number, issued in enumerate(store_per_step[1:], start=2):
        writes = [sql for sql in issued if sql.startswith("BEGIN")]
        assert len(writes) == 1, f"step {number} opened {len(writes)} transactions: {issued}"
    # the build's lease: its own rows written once in the step's transaction (at its first
    # join), not again by each join of the blobs, the image and the image's blobs
    for number, issued in enumerate(store_per_step[1:], start=2):
        lease_rows = [s for s in issued if "INTO leases" in s or "INTO lease_owners" in s]
        assert len(lease_rows) <= 2, f"step {number} wrote its lease's rows again: {lease_rows}"
    assert any(snapshot_per_step), "no snapshot statement was traced: the test measures nothing"
    for number, issued in enumerate(snapshot_per_step[1:], start=2):
        assert len(issued) <= SNAPSHOT_STATEMENTS, (
            f"step {number} issued {len(issued)} statements on the snapshot database: {issued}"
        )

"""The bench's summary: medians, kiln/peer ratios, CPU and RSS columns, and targets."""

from __future__ import annotations

import benchlib as bl
import build_bench


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    head = [h.strip() for h in lines[0].split("  ") if h.strip()]
    out = {}
    for line in lines[2:]:
        cells = line.split()
        out[cells[0]] = dict(zip(head, cells, strict=True))
    return out


def test_medians_and_ratios_of_wall_time():
    results = {
        "tiny": {
            "kiln": [
                bl.Sample(0.30, 0.2, 40_000_000),
                bl.Sample(0.10, 0.1, 50_000_000),
                bl.Sample(0.20, 0.3, 45_000_000),
            ],  # fmt: skip
            "buildkit": [bl.Sample(0.40, 0.5, 150_000_000), bl.Sample(0.50, 0.4, 140_000_000)],
        }
    }
    row = _rows(bl.summary_table(results, ["kiln", "buildkit"]))["tiny"]
    assert row["kiln s"] == "0.200" and row["buildkit s"] == "0.450"
    assert row["kiln/buildkit"] == "0.44"
    assert row["kiln cpu s"] == "0.200" and row["buildkit cpu s"] == "0.450"
    assert row["kiln MB"] == "50" and row["buildkit MB"] == "150"  # the peak, not a median


def test_a_peer_without_samples_shows_a_dash_and_plain_floats_still_work():
    results = {"run20": {"kiln": [1.0, 3.0], "buildah": []}}
    row = _rows(bl.summary_table(results, ["kiln", "buildah"]))["run20"]
    assert row == {"scenario": "run20", "kiln s": "2.000", "buildah s": "-", "kiln/buildah": "-"}


def test_targets_are_ratios_to_buildkit_and_buildah():
    results = {
        "tiny": {
            "kiln": [bl.Sample(0.8)],
            "buildkit": [bl.Sample(1.0)],
            "buildah": [bl.Sample(1.0)],
        },  # fmt: skip
        "noop-rebuild": {"kiln": [bl.Sample(0.2)], "buildkit": [bl.Sample(0.2)]},
    }
    met = build_bench.check_targets(results)["met"]
    assert met["tiny: kiln <= 0.8 x buildkit"] is True
    assert met["tiny: kiln <= 0.5 x buildah"] is False
    assert met["noop-rebuild: kiln <= 0.8 x buildkit"] is False
    assert met["noop-rebuild: kiln < 0.3 s"] is True


def test_a_jobs_1_baseline_is_no_target_against_buildkit_which_has_no_jobs():
    results = {
        "stages4-j1": {
            "kiln": [bl.Sample(10.0)],
            "buildkit": [bl.Sample(4.0)],
            "buildah": [bl.Sample(10.5)],
        }
    }
    checked = build_bench.check_targets(results)
    assert "stages4-j1: kiln <= 0.8 x buildkit" not in checked["met"]
    assert checked["met"]["stages4-j1: kiln <= 0.5 x buildah"] is False  # buildah ran --jobs 1
    assert any("stages4-j1: kiln / buildkit 2.50 is no target" in x for x in checked["lines"])


def test_overhead_beyond_the_floor_compares_what_each_tool_adds():
    results = {
        "stages4": {
            "kiln": [bl.Sample(2.30), bl.Sample(2.40), bl.Sample(2.50)],
            "buildkit": [bl.Sample(2.20), bl.Sample(2.20)],
        },
        "tiny": {"kiln": [bl.Sample(0.3)], "buildkit": [bl.Sample(0.2)]},
    }
    text = bl.overhead_table(results, ["kiln", "buildkit"], {"stages4": 2.0})
    rows = _rows(text)
    assert list(rows) == ["stages4"]  # only scenarios with a floor
    row = rows["stages4"]
    assert row["floor s"] == "2.000"
    assert row["kiln over s"] == "0.400" and row["buildkit over s"] == "0.200"
    assert row["kiln/buildkit over"] == "2.00"


def test_rotation_puts_every_tool_first_once_per_cycle():
    tools = ["kiln", "buildkit", "buildah"]
    orders = [build_bench._rotation(tools, rep) for rep in range(3)]
    assert [o[0] for o in orders] == tools
    assert all(sorted(o) == sorted(tools) for o in orders)


def test_deferred_trees_stay_until_flushed_and_the_probe_leaves_its_files(tmp_path):
    deferred = bl.Deferred()
    store = tmp_path / "store"
    (store / "d").mkdir(parents=True)
    (store / "d" / "f").write_text("x")
    deferred.add(store)
    probe = bl.create_probe(tmp_path, 5)
    assert probe.create_us > 0 and probe.fsync_us > 0
    made = [p for p in tmp_path.iterdir() if p.name.startswith("create-probe-")]
    assert len(made) == 1 and len(list(made[0].iterdir())) == 10  # not deleted under a run
    assert (store / "d" / "f").exists()  # nothing deleted before flush
    deferred.flush()
    assert not store.exists()
    deferred.flush()  # a second flush has nothing left to do

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

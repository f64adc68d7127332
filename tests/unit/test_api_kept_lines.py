"""KeptLines: a quiet build's held-back lines stay bounded, the newest kept."""

from kiln.api.kept_lines import KeptLines
from kiln.api.streaming import json_line


def test_the_oldest_lines_go_past_the_limit_and_the_last_always_stays():
    kept = KeptLines(limit=100)
    assert not kept
    lines = [{"stream": f"line {i:03d} " + "x" * 10 + "\n"} for i in range(50)]
    kept.extend(lines)
    held = list(kept)
    assert held == lines[-len(held) :] and held
    assert sum(len(json_line(o)) for o in held) <= 100
    kept.extend([{"stream": "y" * 500}])  # larger than the limit alone
    assert list(kept) == [{"stream": "y" * 500}]

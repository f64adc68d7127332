"""The applier against a corpus of hostile and broken archives: contained or refused."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from archive_corpus import build_corpus  # noqa: E402
from kiln.archive.applier import apply_layer  # noqa: E402
from kiln.errors import InvalidArgument  # noqa: E402

CORPUS = build_corpus()


def _snapshot(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            out[full] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 25
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("whiteouts", ["overlay", "delete", "none"])
@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_archive_stays_inside(tmp_path, case, whiteouts):
    sentinel = tmp_path / "outside-sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("keep")
    target = tmp_path / "target"
    target.mkdir()
    before = _snapshot(tmp_path)
    del before[str(target)]
    if case.error is not None and not (whiteouts == "none" and "whiteout" in case.error):
        with pytest.raises(InvalidArgument) as info:
            apply_layer(io.BytesIO(case.data), str(target), whiteouts=whiteouts)
        assert case.error in str(info.value)
    else:
        result = apply_layer(io.BytesIO(case.data), str(target), whiteouts=whiteouts)
        assert result.diff_id.startswith("sha256:")
        for rel in case.expect_inside:
            assert os.path.lexists(target / rel), rel
    after = {p: v for p, v in _snapshot(tmp_path).items() if not p.startswith(str(target) + "/")}
    del after[str(target)]
    assert after == before
    assert not os.path.exists("/pwned")
    assert not os.path.exists(tmp_path / "pwned")


def test_symlink_swap_writes_inside(tmp_path):
    case = next(c for c in CORPUS if c.name == "absolute symlink swapped under later entry")
    apply_layer(io.BytesIO(case.data), str(tmp_path))
    assert (tmp_path / "etc" / "passwd").read_text().startswith("root::")
    assert os.readlink(tmp_path / "a") == "/etc"

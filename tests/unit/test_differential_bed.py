"""The differential bed's judging: what counts as a difference, and expected-differences."""

from __future__ import annotations

from pathlib import Path

import pytest

import image_probe
from differential import bed


def _outcome(env=("A=1",), files=None, layering="layer", ok=True):
    config = dict.fromkeys(bed.CONFIG_KEYS)
    config["Env"] = list(env)
    if files is None:
        files = {"/f": image_probe.Entry("file", 0o644, 0, 0, 2, "ab")}
    return bed.Outcome(ok, "" if ok else "step 2 failed", config, layering, files)


def _case(text: str) -> bed.Case:
    return bed.Case("c", Path("."), bed.parse_expected(text), [])


def test_expected_differences_are_read_per_reference():
    exp = bed.parse_expected(
        "# comment\n\nbug: both wrong\nbug buildkit: only here\nbuildkit files:/x: why\n"
    )
    assert exp.bugs == {"buildah": "both wrong", "buildkit": "only here"}
    assert exp.ignored == {"buildkit": {"files:/x": "why"}}
    with pytest.raises(ValueError, match="cannot read"):
        bed.parse_expected("buildkit files:/x\n")  # no reason given


def test_first_difference_is_named_with_both_values():
    ours = _outcome()
    theirs = _outcome(files={"/f": image_probe.Entry("file", 0o600, 0, 0, 2, "ab")})
    msg = bed.judge(_case(""), "buildah", ours, theirs)
    assert "first difference in files:/f" in msg and "0o644" in msg and "0o600" in msg
    assert bed.judge(_case(""), "buildah", ours, _outcome()) is None
    failed = bed.judge(_case(""), "buildah", ours, _outcome(ok=False))
    assert "first difference in result" in failed and "step 2 failed" in failed


def test_recorded_reference_difference_is_ignored_but_must_still_occur():
    ours = _outcome(files={"/d": image_probe.Entry("dir", 0o755, 0, 0)})
    theirs = _outcome(
        files={
            "/d": image_probe.Entry("dir", 0o755, 0, 0),
            "/d/sub": image_probe.Entry("dir", 0o755, 0, 0),
        }
    )
    case = _case("buildkit files:/d: BuildKit keeps the mount point\n")
    assert bed.judge(case, "buildkit", ours, theirs) is None
    # the same entry does not excuse the other reference
    assert "files:/d/sub" in bed.judge(case, "buildah", ours, theirs)
    # a recorded difference that is gone is reported, so the file stays true
    assert "no longer does" in bed.judge(case, "buildkit", ours, ours)
    # a prefix covers a path and what is under it, not a sibling sharing its first letters
    assert not bed._matches("files:/dx", "files:/d")
    assert bed._matches("config.Env", "config")


# -- the README's list of deliberate differences -------------------------------------------------


def test_readme_lists_every_recorded_difference():
    """tests/differential/README.md's list is the one the case files give (regenerate it with
    ``python3 tests/differential/differences.py --write``)."""
    from differential import differences

    assert differences.readme_section(differences.README.read_text()) == differences.listing()


def test_listing_groups_cases_by_reason_and_reference():
    from differential import differences

    cases = [
        bed.Case("a", Path("."), bed.parse_expected("buildah history: why one\n"), []),
        bed.Case("b", Path("."), bed.parse_expected("buildah files:/x: why one\n"), []),
        bed.Case("c", Path("."), bed.parse_expected("buildkit result: why two\nbug: broken\n"), []),
    ]
    text = differences.listing(cases)
    assert "- why one. Cases: `a` (history), `b` (files:/x)." in text
    buildah_part, buildkit_part = text.split("#### kiln vs BuildKit")
    assert "why two" not in buildah_part and "- why two. Cases: `c` (result)." in buildkit_part
    assert "- `c` (buildah): broken" in text and "- `c` (buildkit): broken" in text
    with pytest.raises(ValueError, match="no"):
        differences.readme_section("no markers here")


def test_buildah_vfs_difference_is_ignored_only_on_vfs_storage():
    ours = _outcome()
    theirs = _outcome(files={"/f": image_probe.Entry("file", 0o644, 0, 0, 2, "cd")})
    case = _case("buildah-vfs files:/f: vfs's layer diff misses a same-size change\n")
    assert case.expected.ignored == {
        "buildah-vfs": {"files:/f": "vfs's layer diff misses a same-size change"}
    }
    assert bed.judge(case, "buildah", ours, theirs, buildah_storage="vfs") is None
    assert "files:/f" in bed.judge(case, "buildah", ours, theirs, buildah_storage="overlay")
    assert "files:/f" in bed.judge(case, "buildkit", ours, theirs, buildah_storage="vfs")
    # on overlay the entry asks nothing: the difference is not expected there
    assert bed.judge(case, "buildah", ours, ours, buildah_storage="overlay") is None
    assert "no longer does" in bed.judge(case, "buildah", ours, ours, buildah_storage="vfs")

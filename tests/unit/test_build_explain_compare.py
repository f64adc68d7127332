"""The one-line reasons of `kiln build --explain`, from two steps' key inputs."""

from __future__ import annotations

from kiln.build.explain import compare_inputs, pick_earlier


def _inputs(**over):
    base = {"parent": "p", "base": "sha256:" + "a" * 64, "instruction": {"@": "Run", "c": "x"},
            "text": "RUN x", "args": {}, "files": {}, "from": {}, "settings": {"format": "oci"},
            "extra": {}, "manifests": {}}  # fmt: skip
    base.update(over)
    return base


def test_each_kind_of_difference():
    old = _inputs()
    assert compare_inputs(old, _inputs(args={"V": "1"})) == "build arg V set (1)"
    assert compare_inputs(_inputs(args={"V": "1"}), _inputs(args={"V": "2"})) == (
        "build arg V changed (1 -> 2)"
    )
    assert compare_inputs(old, _inputs(instruction={"@": "Run", "c": "y"})) == (
        "instruction text changed (was: RUN x)"
    )
    assert compare_inputs(old, _inputs(parent="q", base="sha256:" + "b" * 64)) == (
        f"base image changed (sha256:{'a' * 12}.. -> sha256:{'b' * 12}..)"
    )
    assert compare_inputs(old, _inputs(parent="q"), earlier_change="ENV A=1") == (
        "an earlier step changed (ENV A=1)"
    )
    assert compare_inputs(old, _inputs(settings={"format": "docker"})) == (
        "build setting format changed (oci -> docker)"
    )
    assert compare_inputs(old, _inputs(**{"from": {"builder": "sha256:" + "c" * 64}})) == (
        f"--from=builder changed (none -> sha256:{'c' * 12}..)"
    )
    assert compare_inputs(old, old) == "its inputs changed"


def test_files_by_name_and_mode():
    a = {"a": "file 644 11", "b": "file 644 22", "c": "file 644 33", "d": "file 644 44",
         "s.sh": "file 644 55"}  # fmt: skip
    b = dict(a, a="file 644 12", b="file 644 23", c="file 644 34", **{"s.sh": "file 755 55"})
    old = _inputs(files={"context": "d1"}, manifests={"context": a})
    new = _inputs(files={"context": "d2"}, manifests={"context": b})
    assert compare_inputs(old, new) == (
        "3 files changed (a, b, +1); file mode changed: s.sh 0644 -> 0755"
    )
    # without a list of files (too many to keep), the change is still said
    assert compare_inputs(_inputs(files={"context": "d1"}), _inputs(files={"context": "d2"})) == (
        "context files changed"
    )


def test_nearest_earlier_entry_order():
    def cand(key, parent, locator, same):
        return {"key": key, "parent": parent, "locator": locator, "instruction": "RUN",
                "same_instruction": same, "inputs": {"key": key}}  # fmt: skip

    cands = [cand("other-dockerfile", "p", "L2", True), cand("mine", "p", "L1", False)]
    assert pick_earlier(cands, "L1", "p", "RUN") == {"key": "mine"}
    cands = [cand("new-base", "q", "L1", False), cand("same-text", "r", "L1", True)]
    assert pick_earlier(cands, "L1", "p", "RUN") == {"key": "same-text"}
    assert pick_earlier([], "L1", "p", "RUN") is None

"""The differential bed's judging: what counts as a difference, and expected-differences."""

from __future__ import annotations

from pathlib import Path

import pytest

import image_probe
from differential import bed


@pytest.fixture
def no_every_case(monkeypatch):
    """The bed's differences of every case (buildah's container_config) are not what these
    judge (their outcomes have no config document); the test of EVERY_CASE sets its own."""
    monkeypatch.setattr(bed, "EVERY_CASE", {})


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


@pytest.mark.usefixtures("no_every_case")
def test_first_difference_is_named_with_both_values():
    ours = _outcome()
    theirs = _outcome(files={"/f": image_probe.Entry("file", 0o600, 0, 0, 2, "ab")})
    msg = bed.judge(_case(""), "buildah", ours, theirs)
    assert "first difference in files:/f" in msg and "0o644" in msg and "0o600" in msg
    assert bed.judge(_case(""), "buildah", ours, _outcome()) is None
    failed = bed.judge(_case(""), "buildah", ours, _outcome(ok=False))
    assert "first difference in result" in failed and "step 2 failed" in failed


@pytest.mark.usefixtures("no_every_case")
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


@pytest.mark.usefixtures("no_every_case")
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


# -- what is compared beyond the runtime config and the merged files -----------------------------


def _image(history=(), layers=None, builder="buildah", **doc):
    """An Outcome with a config document: ``history`` the entries after a one-entry base."""
    out = _outcome()
    entries = [{"comment": "base"}, *history]
    out.layering = " ".join("empty" if h.get("empty_layer") else "layer" for h in history)
    out.doc = {"architecture": "amd64", "os": "linux", "history": entries, **doc}
    out.layers = [{}] if layers is None else layers
    out.builder, out.base_history = builder, 1
    return out


def _names(ours, theirs):
    return [d[0] for d in bed.compare(ours, theirs)]


def _file(mode=0o644, sha="ab", kind="file"):
    return image_probe.Entry(kind, mode, 0, 0, 0 if kind != "file" else 2, sha)


def test_config_document_fields_are_compared_one_by_one():
    ours = _image()
    assert _names(ours, _image()) == []
    theirs = _image(variant="v8", author="me", container_config={"Cmd": ["sh"]})
    assert _names(ours, theirs) == ["variant", "author", "container_config"]
    assert ("container_config", None, "present") in bed.compare(ours, theirs)
    args_escaped = _image()
    args_escaped.config = dict(args_escaped.config, ArgsEscaped=True)
    assert _names(ours, args_escaped) == ["config.ArgsEscaped"]


def test_history_text_is_compared_entry_by_entry_with_copy_digests_masked():
    copy = "/bin/sh -c #(nop) COPY file:{} in /d "
    ours = _image([{"created_by": copy.format("aa")}, {"created_by": "/bin/sh -c true"}])
    same = _image([{"created_by": copy.format("bb"), "comment": "FROM localhost/busybox"},
                   {"created_by": "/bin/sh -c true", "comment": "FROM 0123abcd"}])  # fmt: skip
    assert _names(ours, same) == []  # content digest and builder's signing comment aside
    other = _image([{"created_by": copy.format("bb")}, {"created_by": "/bin/sh -c false"}])
    [(name, a, b)] = bed.compare(ours, other)
    assert name == "history.created_by" and a == "#2 '/bin/sh -c true'" and "false" in b
    authored = _image([{"created_by": copy.format("aa"), "author": "me"},
                       {"created_by": "/bin/sh -c true", "comment": "made by hand"}])  # fmt: skip
    assert _names(ours, authored) == ["history.comment", "history.author"]


def test_buildkit_history_is_compared_on_run_lines_without_their_flags():
    ours = _image([{"created_by": "/bin/sh -c #(nop) WORKDIR /w", "empty_layer": True},
                   {"created_by": "/bin/sh -c --mount=type=cache,target=/c ls /c"}])  # fmt: skip
    theirs = _image([{"created_by": "WORKDIR /w", "empty_layer": True},
                     {"created_by": "RUN /bin/sh -c ls /c # buildkit"}], builder="buildkit")  # fmt: skip
    assert _names(ours, theirs) == []
    theirs.doc["history"][2]["created_by"] = "RUN /bin/sh -c ls /d # buildkit"
    assert _names(ours, theirs) == ["history.created_by"]


def test_each_layers_own_entries_are_compared_whiteouts_included():
    base = {"/bin": _file(0o755, kind="dir")}
    ours = _image(layers=[base, {"/etc/.wh.group": _file(sha="")}])
    theirs = _image(layers=[base, {"/etc/.wh.group": _file(0o600, sha="")}])
    assert _names(ours, theirs) == ["layers:2:/etc/.wh.group"]
    assert _names(ours, _image(layers=[base])) == ["layers"]
    # a recorded difference of a file in the image covers that file in its layer
    case = _case("buildkit files:/etc: why\n")
    assert bed.judge(case, "buildkit", ours, theirs) is None
    assert "no longer does" in bed.judge(case, "buildkit", ours, ours)


def test_a_layer_repeating_etc_only_for_the_runtime_is_not_a_difference():
    etc = image_probe.Entry("dir", 0o755, 0, 0)
    base_files = {"/etc": etc, "/etc/passwd": _file()}
    run_layer = {"/etc": etc, "/etc/hostname": image_probe.Entry("file", 0o755, 0, 0),
                 "/proc": etc, "/out": _file()}  # fmt: skip
    assert bed._layer_without_runtime_artifacts(run_layer, base_files) == {"/out": _file()}
    # a step that changed /etc keeps it, and what it put there
    changed = {"/etc": etc, "/etc/motd": _file()}
    assert bed._layer_without_runtime_artifacts(changed, base_files) == changed
    chmodded = {"/etc": image_probe.Entry("dir", 0o700, 0, 0)}
    assert bed._layer_without_runtime_artifacts(chmodded, base_files) == chmodded


def test_a_difference_every_case_shows_is_recorded_once(monkeypatch):
    monkeypatch.setattr(bed, "EVERY_CASE", {"buildah": {"container_config": "why"}})
    step = [{"created_by": "/bin/sh -c true"}]
    ours, theirs = _image(step), _image(step, container_config={"Cmd": ["sh"]})
    assert bed.judge(_case(""), "buildah", ours, theirs) is None
    assert "no longer does" in bed.judge(_case(""), "buildah", ours, _image(step))
    # a Dockerfile of only FROM: buildah gives its base image as it is, and nothing differs
    assert bed.judge(_case(""), "buildah", _image(), _image()) is None
    # a case one builder fails shows no config at all: the entry asks nothing there
    failed = _outcome(ok=False)
    assert "first difference in result" in bed.judge(_case(""), "buildah", failed, theirs)
    assert "container_config" in bed.judge(_case(""), "buildkit", ours, theirs)


def test_layer_listing_keeps_whiteouts_and_hard_links(tmp_path):
    import io
    import tarfile

    def layer(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tar.addfile(info, io.BytesIO(b""))
        return lambda data=buf.getvalue(): io.BytesIO(data)

    merged, layers = image_probe.listings([
        layer([("d", tarfile.DIRTYPE, ""), ("d/a", tarfile.REGTYPE, ""),
               ("e", tarfile.DIRTYPE, ""), ("e/x", tarfile.REGTYPE, ""), ("gone", tarfile.REGTYPE, "")]),
        layer([("e/.wh..wh..opq", tarfile.REGTYPE, ""), ("d/b", tarfile.LNKTYPE, "d/a"),
               (".wh.gone", tarfile.REGTYPE, "")]),
    ])  # fmt: skip
    assert sorted(layers[1]) == ["/.wh.gone", "/d/b", "/e/.wh..wh..opq"]
    assert layers[1]["/d/b"].type == "hardlink" and layers[1]["/d/b"].target == "/d/a"
    assert sorted(merged) == ["/d", "/d/a", "/d/b", "/e"]

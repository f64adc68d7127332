"""`kiln build --check`, and the check warnings every `kiln build` prints after building."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

BAD = "FROM busybox as Base\nENV greeting hello\nCMD echo $greeting $NOPE\n"


def kiln(env, *args: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, KILN_ROOT=env.store.root)
    return subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], capture_output=True,
                          text=True, env=environ, timeout=300)  # fmt: skip


def test_check_lints_without_building(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": BAD})
    before = build_env.store.count_cache()
    proc = kiln(build_env, "build", "--check", "-t", "never", ctx)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Check complete, 4 warnings have been found!",
        "WARNING: FromAsCasing - 'as' and 'FROM' keywords' casing do not match (line 1)",
        "WARNING: StageNameCasing - Stage name 'Base' should be lowercase (line 1)",
        'WARNING: LegacyKeyValueFormat - "ENV key=value" should be used instead of legacy '
        '"ENV key value" format (line 2)',
        "WARNING: JSONArgsRecommended - JSON arguments recommended for CMD to prevent "
        "unintended behavior related to OS signals (line 3)",
    ]
    assert "localhost/never" not in kiln(build_env, "images").stdout
    assert build_env.store.count_cache() == before
    good = build_env.context_dir("good", files={"Containerfile": 'FROM busybox\nCMD ["sh"]\n'})
    clean = kiln(build_env, "build", "--check", good)
    assert clean.returncode == 0 and clean.stdout == "Check complete, no warnings found.\n"
    as_json = kiln(build_env, "build", "--check", "--progress", "json", ctx)
    rules = [json.loads(line)["data"]["rule"] for line in as_json.stdout.splitlines()]
    assert rules == ["FromAsCasing", "StageNameCasing", "LegacyKeyValueFormat",
                     "JSONArgsRecommended"]  # fmt: skip
    failing = build_env.context_dir("err", files={"Containerfile": "# check=error=true\n" + BAD})
    assert kiln(build_env, "build", "--check", failing).returncode == 1


def test_warnings_after_the_build_and_error_true_stops_it(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": BAD})
    proc = kiln(build_env, "build", "-t", "linted", ctx)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "WARNING: JSONArgsRecommended - JSON arguments recommended for CMD to prevent "
        "unintended behavior related to OS signals (line 3)"
    )
    assert len(proc.stdout.splitlines()[-1]) == 64  # stdout still ends with the image ID
    record = json.loads(kiln(build_env, "build", "history", "inspect").stdout)
    assert len(record["warnings"]) == 4

    failing = build_env.context_dir("err", files={"Containerfile": "# check=error=true\n" + BAD})
    proc = kiln(build_env, "build", "-t", "stopped", failing)
    assert proc.returncode == 125
    assert "the build checks failed (# check=error=true)" in proc.stderr
    assert "STEP" not in proc.stdout  # nothing ran
    skipped = build_env.context_dir("skip", files={"Containerfile": (
        "# check=skip=all;error=true\n" + BAD)})  # fmt: skip
    proc = kiln(build_env, "build", skipped)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr

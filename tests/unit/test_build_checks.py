"""Build checks (`kiln build --check`): each rule flags its Dockerfile, good ones pass clean."""

from __future__ import annotations

import pytest

from kiln.build.checks import RULES, run_checks
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument

BASE_ENV = {"busybox": ["PATH", "HOME"], "busybox:1.36": ["PATH"]}

# (rule, Dockerfile, line, message)
BAD = [
    ("StageNameCasing", "FROM busybox AS Builder\n", 1,
     "Stage name 'Builder' should be lowercase"),
    ("FromAsCasing", "FROM busybox as builder\n", 1,
     "'as' and 'FROM' keywords' casing do not match"),
    ("ConsistentInstructionCasing", "FROM busybox\nRUN true\nrun true\nRUN true\n", 3,
     "Command 'run' should match the case of the command majority (uppercase)"),
    ("DuplicateStageName", "FROM busybox AS a\nFROM busybox AS a\n", 2,
     'Duplicate stage name "a", stage names should be unique'),
    ("ReservedStageName", "FROM busybox AS scratch\n", 1,
     'Stage name should not use the same name as reserved stage "scratch"'),
    ("JSONArgsRecommended", "FROM busybox\nCMD echo hi\n", 2,
     "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"),
    ("JSONArgsRecommended", "FROM busybox\nENTRYPOINT sh\n", 2,
     "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS "
     "signals"),
    ("MaintainerDeprecated", "FROM busybox\nMAINTAINER me\n", 2,
     "Maintainer instruction is deprecated in favor of using label"),
    ("LegacyKeyValueFormat", "FROM busybox\nENV key value\n", 2,
     '"ENV key=value" should be used instead of legacy "ENV key value" format'),
    ("LegacyKeyValueFormat", "FROM busybox\nLABEL key value\n", 2,
     '"LABEL key=value" should be used instead of legacy "LABEL key value" format'),
    ("UndefinedVar", "FROM busybox\nENV PATH=$PAHT:/opt/bin\n", 2,
     "Usage of undefined variable '$PAHT'"),
    ("UndefinedVar", "FROM busybox\nCOPY $SRC /x\n", 2, "Usage of undefined variable '$SRC'"),
    ("UndefinedArgInFrom", "FROM busybox:$VERSION\n", 1,
     "FROM argument 'VERSION' is not declared"),
    ("InvalidDefaultArgInFrom", "ARG TAG=\nFROM busybox:$TAG\n", 2,
     "Default value for ARG busybox:$TAG results in empty or invalid base image name"),
    ("InvalidDefaultArgInFrom", "ARG TAG\nFROM busybox:$TAG\n", 2,
     "Default value for ARG busybox:$TAG results in empty or invalid base image name"),
    ("WorkdirRelativePath", "FROM busybox\nWORKDIR app\n", 2,
     'Relative workdir "app" can have unexpected results if the base image changes'),
    ("SecretsUsedInArgOrEnv", "FROM busybox\nARG API_TOKEN\n", 2,
     'Do not use ARG or ENV instructions for sensitive data (ARG "API_TOKEN")'),
    ("SecretsUsedInArgOrEnv", "FROM busybox\nENV DB_PASSWORD=x\n", 2,
     'Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")'),
    ("CopyIgnoredFile", "FROM busybox\nCOPY secret.txt /x\n", 2,
     'Attempting to Copy file "secret.txt" that is excluded by .dockerignore'),
    ("FromPlatformFlagConstDisallowed", "FROM --platform=linux/amd64 busybox\n", 1,
     'FROM --platform flag should not use constant value "linux/amd64"'),
    ("RedundantTargetPlatform", "FROM --platform=$TARGETPLATFORM busybox\n", 1,
     "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the "
     "default behavior"),
    ("MultipleInstructionsDisallowed", 'FROM busybox\nCMD ["a"]\nCMD ["b"]\n', 2,
     "Multiple CMD instructions should not be used in the same stage because only the last one "
     "will be used"),
    ("MultipleInstructionsDisallowed", 'FROM busybox\nENTRYPOINT ["a"]\nENTRYPOINT ["b"]\n', 2,
     "Multiple ENTRYPOINT instructions should not be used in the same stage because only the "
     "last one will be used"),
    ("MultipleInstructionsDisallowed",
     "FROM busybox\nHEALTHCHECK CMD [\"true\"]\nHEALTHCHECK NONE\n", 2,
     "Multiple HEALTHCHECK instructions should not be used in the same stage because only the "
     "last one will be used"),
]  # fmt: skip

GOOD = [
    'FROM busybox\nRUN echo hi\nCMD ["sh"]\n',
    "ARG VERSION=1.36\nFROM busybox:${VERSION} AS build\nWORKDIR /src\nWORKDIR app\n"
    'COPY . .\nENV A=1\nENV B=$A\nLABEL x=y\nENTRYPOINT ["sh"]\n',
    "FROM busybox AS base\nENV HOME_DIR=/h\nFROM base\nWORKDIR $HOME_DIR\n",
    "FROM --platform=$BUILDPLATFORM busybox AS tools\nARG TARGETARCH\n"
    "RUN echo $TARGETARCH $ANYTHING_IN_RUN\nFROM scratch\nCOPY --from=tools /bin/busybox /b\n",
    'from busybox as lower\nrun true\ncmd ["sh"]\n',
    "FROM busybox\nARG PUBLIC_KEY=x\nENV KEYBOARD=us\nCOPY app.py /app/\n",
    'FROM busybox\nCMD ["a"]\nFROM busybox\nCMD ["b"]\n',
    # a global ARG of a platform arg keeps its automatic value; defaults see earlier args
    "ARG TARGETARCH\nFROM busybox-$TARGETARCH\n",
    "ARG TARGETARCH\nARG V=1.36\nARG BASE=busybox:$V-$TARGETARCH\nFROM $BASE\n",
]


def _check(text: str, **kw):
    return run_checks(parse_string(text), ignore_patterns=["secret.txt", "*.log"],
                      base_env=lambda name: BASE_ENV.get(name), **kw)  # fmt: skip


@pytest.mark.parametrize(("rule", "text", "line", "message"), BAD, ids=[b[0] for b in BAD])
def test_each_rule_flags_its_dockerfile(rule, text, line, message):
    found = [w for w in _check(text).warnings if w.rule == rule]
    assert [(w.line, w.message) for w in found] == [(line, message)]
    assert str(found[0]) == f"{rule} - {message} (line {line})"


def test_every_rule_is_covered_by_the_table():
    assert {b[0] for b in BAD} == set(RULES)


@pytest.mark.parametrize("text", GOOD)
def test_good_dockerfiles_pass_clean(text):
    assert _check(text).warnings == []


def test_check_directive_skip_and_error():
    text = "FROM busybox as Builder\nCMD echo hi\n"
    assert {w.rule for w in _check(text).warnings} == {
        "FromAsCasing", "StageNameCasing", "JSONArgsRecommended"
    }  # fmt: skip
    skipped = _check("# check=skip=FromAsCasing,JSONArgsRecommended\n" + text)
    assert [w.rule for w in skipped.warnings] == ["StageNameCasing"] and not skipped.error
    assert _check("# check=skip=all\n" + text).warnings == []
    failing = _check("# check=error=true\n" + text)
    assert failing.error and len(failing.warnings) == 3
    assert not _check("# check=error=true\n" + GOOD[0]).error
    with pytest.raises(InvalidArgument):
        _check("# check=error=maybe\n" + text)


def test_undefined_var_needs_a_known_base():
    # an image the store does not hold: nothing is guessed
    assert _check("FROM unknown/image\nENV X=$MAYBE_FROM_THE_IMAGE\n").warnings == []
    assert _check("FROM busybox\nENV X=$HOME\n").warnings == []

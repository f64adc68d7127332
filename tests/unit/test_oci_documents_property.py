"""Property: manifests, indexes, configs and schema 1 manifests from anywhere (random JSON,
a valid document with one field replaced by random JSON, random bytes, huge or deep input)
are parsed or refused with kiln's error, never another exception, within the size and
depth caps. ``test_oci_hostile_documents.py`` holds the fixed hostile cases."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.errors import KilnError
from kiln.oci import media_types as mt
from kiln.oci.config import ImageConfig
from kiln.oci.manifest import Index, Manifest
from kiln.oci.schema1 import Schema1Manifest
from kiln.oci.strict_json import MAX_MANIFEST_BYTES

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

DIGEST = "sha256:" + "a" * 64
DESC = {"mediaType": mt.OCI_LAYER_GZIP, "digest": DIGEST, "size": 3}
VALID = {
    "manifest": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                 "config": {**DESC, "mediaType": mt.OCI_CONFIG}, "layers": [DESC],
                 "annotations": {"a": "b"}},
    "index": {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
              "manifests": [{**DESC, "mediaType": mt.OCI_MANIFEST,
                             "platform": {"os": "linux", "architecture": "amd64"}}]},
    "config": {"architecture": "amd64", "os": "linux",
               "config": {"Env": ["A=b"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}},
                          "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10}},
               "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
               "history": [{"created_by": "x", "empty_layer": True}]},
    "schema1": {"schemaVersion": 1, "name": "a/b", "tag": "t", "architecture": "amd64",
                "fsLayers": [{"blobSum": DIGEST}],
                "history": [{"v1Compatibility": json.dumps({"id": "x", "config": {}})}]},
}  # fmt: skip

scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from([DIGEST, "sha256:x", mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, "", "linux"]),
)  # fmt: skip
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "mediaType",
                    "digest",
                    "size",
                    "config",
                    "layers",
                    "manifests",
                    "schemaVersion",
                    "platform",
                    "os",
                    "Env",
                    "rootfs",
                    "diff_ids",
                    "history",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        ),  # fmt: skip
    ),
    max_leaves=20,
)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(doc, path, new):
    if not path:
        return new
    doc = json.loads(json.dumps(doc))
    here = doc
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = new
    return doc


KINDS = {
    "manifest": lambda raw, media_type: Manifest.parse(raw, media_type),
    "index": lambda raw, media_type: Index.parse(raw, media_type),
    "config": lambda raw, media_type: ImageConfig.parse(raw),
    "schema1": lambda raw, media_type: Schema1Manifest.parse(raw, media_type),
}
media = st.sampled_from(["", mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.OCI_INDEX,
                         mt.DOCKER_MANIFEST_LIST, "application/json", "x/y"])  # fmt: skip


def _parse_or_refuse(kind: str, raw: bytes, media_type: str) -> None:
    try:
        KINDS[kind](raw, media_type)
    except KilnError:
        pass


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), value=json_value, media_type=media)
def test_random_json_is_parsed_or_refused(kind, value, media_type):
    _parse_or_refuse(kind, json.dumps(value).encode(), media_type)


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data(), new=json_value, media_type=media)
def test_a_valid_document_with_one_field_replaced(kind, data, new, media_type):
    doc = VALID[kind]
    paths = [p for p, _v in _paths(doc)]
    path = data.draw(st.sampled_from(paths))
    _parse_or_refuse(kind, json.dumps(_replace(doc, path, new)).encode(), media_type)


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), raw=st.binary(max_size=64), media_type=media)
@example(kind="manifest", raw=b'{"schemaVersion": 2, "layers": [], "config": {"size": 1e400}}',
         media_type="")  # fmt: skip
@example(kind="config", raw=b"\xff\xfe{}", media_type="")
def test_random_bytes_are_refused(kind, raw, media_type):
    _parse_or_refuse(kind, raw, media_type)


@settings(max_examples=12, deadline=None, database=None)
@given(kind=st.sampled_from(sorted(KINDS)), depth=st.integers(min_value=500, max_value=200_000),
       opener=st.sampled_from(["[", '{"a":']))  # fmt: skip
def test_deep_or_oversized_documents_are_refused(kind, depth, opener):
    closer = "]" if opener == "[" else "}"
    raw = (opener * depth + "1" + closer * depth).encode()
    try:
        KINDS[kind](raw, "")
    except KilnError:
        pass
    else:
        raise AssertionError("a deep document was accepted")
    huge = json.dumps({**VALID[kind], "pad": "x" * (2 * MAX_MANIFEST_BYTES + 1)}).encode()
    try:
        KINDS[kind](huge, "")
    except KilnError as exc:
        assert "limit" in str(exc) or "not" in str(exc), exc
    else:
        raise AssertionError(f"a {len(huge)}-byte {kind} was accepted")


def _with(kind: str, path: tuple, value) -> bytes:
    return json.dumps(_replace(VALID[kind], path, value)).encode()


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("config", _with("config", ("config", "Healthcheck", "Interval"), "x")),  # ValueError
        ("config", _with("config", ("config", "Healthcheck", "Test"), 1.5)),  # TypeError
        ("config", _with("config", ("config", "Healthcheck", "Retries"), True)),
        ("config", _with("config", ("os.features",), -1)),  # TypeError
        ("config", _with("config", ("os.version",), [])),
        ("index", _with("index", ("manifests", 0, "platform", "architecture"), {})),
        ("index", _with("index", ("manifests", 0, "platform", "features"), True)),
        ("index", _with("index", ("manifests", 0, "platform"), [])),
        ("index", _with("index", ("mediaType",), [1])),  # unhashable
        ("manifest", _with("manifest", ("mediaType",), {"a": 1})),
        # parses near the recursion limit, but a RecursionError when written back
        ("config", ('{"a":' * 950 + "1" + "}" * 950).encode()),
    ],
)
def test_found_type_confusions_are_kiln_errors(kind, raw):
    """What these property tests found: each was an unexpected TypeError, ValueError,
    AttributeError (or a config that could not be written back) before."""
    with pytest.raises(KilnError):
        KINDS[kind](raw, "")

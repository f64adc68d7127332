"""Property: reference parsing never fails with anything but kiln's error, what it accepts
prints back to the same reference, and every reference the Docker grammar generates
parses to the fields it was made of (normalised as Docker does)."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.errors import KilnError
from kiln.oci.reference import Reference

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

REF_CHARS = string.ascii_letters + string.digits + "._-/:@[]+" + "é\u0130\u212a\x00 \n"
alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)
separator = st.sampled_from([".", "_", "__", "-", "--"])
component = st.tuples(alnum, st.lists(st.tuples(separator, alnum), max_size=2)).map(
    lambda t: t[0] + "".join(s + a for s, a in t[1])
)
path = st.lists(component, min_size=1, max_size=3).map("/".join)
host_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?", fullmatch=True)
domain = st.one_of(
    st.just("localhost"),
    st.tuples(host_label, host_label).map(lambda t: f"{t[0]}.{t[1]}"),
    st.just("[::1]"),
).flatmap(lambda d: st.sampled_from([d, d + ":5000"]))
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digest = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)


def _parse(value: str) -> Reference | None:
    try:
        return Reference.parse(value)
    except KilnError:
        return None


@SETTINGS
@given(st.one_of(st.text(REF_CHARS, max_size=40), st.text(max_size=40)))
@example("busybox:é")  # Docker's tag grammar is ASCII
@example("a" * 300)
@example("[::1]:5000/x")
@example("x@sha256:" + "a" * 63)
def test_anything_parses_or_is_refused_with_kilns_error(value):
    ref = _parse(value)
    if ref is None:
        return
    text = str(ref)
    assert text.isascii(), text
    again = Reference.parse(text)
    assert again == ref and str(again) == text
    assert Reference.parse(ref.familiar_name + (f":{ref.tag}" if ref.tag else "")).name == ref.name


@SETTINGS
@given(
    domain=st.one_of(st.none(), domain),
    path=path,
    tag=st.one_of(st.none(), tag),
    digest=st.one_of(st.none(), digest),
)
def test_every_grammatical_reference_parses_to_its_parts(domain, path, tag, digest):
    value = (f"{domain}/" if domain else "") + path
    value += f":{tag}" if tag else ""
    value += f"@{digest}" if digest else ""
    first = path.split("/")[0]
    if len((domain or "docker.io/library") + "/" + path) > 255:
        return
    if not domain and ("." in first or first == "localhost") and "/" in path:
        return  # a first component that looks like a host is one (Docker's rule)
    ref = Reference.parse(value)
    want_domain = domain or "docker.io"
    want_path = path if domain or "/" in path else "library/" + path
    assert (ref.domain, ref.path) == (want_domain, want_path)
    assert ref.tag == (tag or ("" if digest else "latest"))
    assert ref.digest == (digest or "")
    assert Reference.parse(str(ref)) == ref

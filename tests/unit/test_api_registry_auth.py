"""kiln.api.registry_auth: Docker's single AuthConfig, podman's per-registry map (in
X-Registry-Auth) and X-Registry-Config become request-only registry options."""

from __future__ import annotations

import base64
import json

from starlette.requests import Request

from kiln.api.registry_auth import (
    build_registry_auth,
    build_registry_options,
    push_pull_options,
    request_credentials,
)
from kiln.registry.credentials import Credential, lookup
from kiln.registry.options import RegistryOptions


def request(libpod: bool = False, **headers: object) -> Request:
    raw = [
        (k.replace("_", "-").lower().encode(), base64.urlsafe_b64encode(json.dumps(v).encode()))
        for k, v in headers.items()
    ]
    scope = {"type": "http", "headers": raw, "method": "POST", "path": "/", "kiln.libpod": libpod}
    return Request(scope)


def test_a_single_auth_config_is_creds():
    r = request(x_registry_auth={"username": "u", "password": "p", "serveraddress": "h:5000"})
    assert request_credentials(r) == {"creds": Credential("u", "p")}


def test_podmans_map_with_go_field_names_is_per_registry():
    r = request(x_registry_auth={"h:5000": {"Username": "u", "Password": "p"},
                                 "quay.io": {"auth": base64.b64encode(b"q:w").decode()}})  # fmt: skip
    opts = request_credentials(r)
    assert opts == {"auths": {"h:5000": Credential("u", "p"), "quay.io": Credential("q", "w")}}
    assert lookup("h:5000", auths=opts["auths"], env={}).username == "u"
    assert lookup("quay.io", "ns/x", auths=opts["auths"], env={}).password == "w"
    assert lookup("other:1", auths=opts["auths"], env={"HOME": "/nonexistent"}) is None


def test_x_registry_config_for_builds_and_pushes():
    r = request(
        x_registry_config={"https://index.docker.io/v1/": {"username": "d", "password": "x"}}
    )
    assert build_registry_auth(r) == {"https://index.docker.io/v1/": Credential("d", "x")}
    assert lookup("docker.io", auths=build_registry_auth(r), env={}).username == "d"
    assert push_pull_options(r, reference="127.0.0.1:5000/a/b:1") == RegistryOptions(
        auths={"https://index.docker.io/v1/": Credential("d", "x")},
        tls_verify=False,
        docker_short_names=True,
    )


def test_short_names_mean_docker_hub_on_docker_routes_only():
    """dockerd reads ``alpine`` as ``docker.io/library/alpine``; podman --remote, on the
    libpod routes, relies on registries.conf's unqualified-search registries."""
    docker, libpod = request(), request(libpod=True)
    assert push_pull_options(docker).docker_short_names
    assert not push_pull_options(libpod, tls_verify=False).docker_short_names
    # and, as dockerd, a registry on this machine is insecure to a build's pulls
    assert build_registry_options(docker) == RegistryOptions(
        docker_short_names=True, insecure_loopback=True
    )
    assert build_registry_options(libpod) is None  # the defaults, as before
    mapped = request(libpod=True, x_registry_config={"h:5000": {"username": "u", "password": "p"}})
    assert build_registry_options(mapped) == RegistryOptions(auths={"h:5000": Credential("u", "p")})


def test_an_identity_token_alone_is_a_credential():
    """What docker-py sends from ``auths[...]["identitytoken"]`` and ``docker login`` keeps
    for a registry that issued an OAuth2 refresh token: dockerd trades the token at the
    token server; dropping it sent the pull out anonymous."""
    r = request(x_registry_auth={"identitytoken": "refresh-1", "serveraddress": "h:5000"})
    cred = push_pull_options(r).creds
    assert cred == Credential("", "", "refresh-1")
    assert "refresh-1" not in repr(cred) + repr(push_pull_options(r))


def test_identity_tokens_in_per_registry_maps_keep_the_username():
    """The docker CLI's X-Registry-Config for a build, and podman's map in X-Registry-Auth
    (Go field names): the token with the username it belongs to."""
    token_auth = {"auth": base64.b64encode(b"u:").decode(), "identitytoken": "refresh-2"}
    r = request(x_registry_config={"h:5000": token_auth},
                x_registry_auth={"q.io": {"Username": "q", "IdentityToken": "refresh-3"}})  # fmt: skip
    auths = build_registry_auth(r)
    assert auths == {"h:5000": Credential("u", "", "refresh-2"),
                     "q.io": Credential("q", "", "refresh-3")}  # fmt: skip
    assert lookup("h:5000", "a/b", auths=auths, env={}).identity_token == "refresh-2"

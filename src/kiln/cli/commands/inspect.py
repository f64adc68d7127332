"""kiln inspect: show the configuration of images (and, later, working containers)."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("inspect", short_help="Display the configuration of an object")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
@click.option(
    "-t",
    "--type",
    "type_",
    type=click.Choice(("image", "container", "all")),
    default="all",
    show_default=True,
    help="What the names refer to",
)
@format_option(help="json (default) or a Go template such as {{.Id}}", short=True)
@pass_state
def command(state: State, names, type_, format_):
    """Print one JSON array with an object per IMAGE, as `podman inspect` does."""
    _run(state, names, type_, format_)


@click.command("inspect", short_help="Display the configuration of an image")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
@format_option(help="json (default) or a Go template such as {{.Id}}", short=True)
@pass_state
def image_command(state: State, names, format_):
    """Print one JSON array with an object per IMAGE (`podman image inspect`)."""
    _run(state, names, "image", format_)


def _run(state: State, names, type_: str, format_: str) -> None:
    from kiln.cli import render
    from kiln.errors import NotFound

    results = []
    errors: list[str] = []
    with state.context() as ctx:
        for name in names:
            try:
                results.append(_inspect_one(ctx, name, type_))
            except NotFound as exc:
                errors.append(str(exc))
    results = [_podman_repo_digests(r) for r in results]
    if format_ and format_ != "json":
        if results:
            objs = [_go_structs(_go_times(r)) for r in results]
            state.echo(render.templated(format_, objs), nl=False)
    else:
        state.echo(render.to_json(results))
    if errors:
        for msg in errors[:-1]:
            state.echo(f"Error: {msg}", err=True)
        raise NotFound(errors[-1])


def _podman_repo_digests(obj: dict) -> dict:
    """An image's RepoDigests with each name's repository at its digest, as podman shows them."""
    from kiln.ops.images import podman_repo_digests

    if "RepoDigests" not in obj or not isinstance(obj.get("Digest"), str):
        return obj  # a list or a container
    digests = podman_repo_digests(obj.get("RepoTags") or [], obj["RepoDigests"], obj["Digest"])
    return {**obj, "RepoDigests": digests}


def _go_times(obj: dict) -> dict:
    """``{{.Created}}`` prints as Go prints podman's time.Time; ``{{json .Created}}`` stays RFC 3339."""
    from kiln.cli import render
    from kiln.cli.go_template import GoTime

    created = obj.get("Created")
    if isinstance(created, str) and created:
        return {**obj, "Created": GoTime(created, render.go_time(created))}
    return obj


def _go_structs(obj: dict) -> dict:
    """An image's inspect object (and its config) as podman's Go structs read in a template:
    a field its JSON leaves out is the zero value (``{{.Config.Entrypoint}}`` is ``[]``), and a
    working container's ``OCIv1`` config as buildah's."""
    from kiln.cli.go_template import GoStruct

    if "RootFS" in obj:  # an image (a list shows its manifests, a container buildah's builder)
        config = GoStruct(obj.get("Config") or {}, _image_config_zero())
        return GoStruct({**obj, "Config": config}, _image_zero())
    oci = obj.get("OCIv1")
    if isinstance(oci, dict) and isinstance(oci.get("config"), dict):
        config = GoStruct(oci["config"], _image_config_zero())
        return {**obj, "OCIv1": {**oci, "config": config}}
    return obj


def _image_config_zero() -> dict:
    """The fields of the OCI image config (image-spec's v1.ImageConfig), each as Go's zero."""
    from kiln.cli.go_template import NIL_MAP, NIL_SLICE

    return {"User": "", "ExposedPorts": NIL_MAP, "Env": NIL_SLICE, "Entrypoint": NIL_SLICE,
            "Cmd": NIL_SLICE, "Volumes": NIL_MAP, "WorkingDir": "", "Labels": NIL_MAP,
            "StopSignal": "", "ArgsEscaped": False}  # fmt: skip


def _image_zero() -> dict:
    """podman's ImageData fields that its JSON may leave out or hold as null."""
    from kiln.cli.go_template import NIL_MAP, NIL_POINTER

    return {"Labels": NIL_MAP, "Annotations": NIL_MAP, "HealthCheck": NIL_POINTER,
            "Author": "", "Comment": "", "Version": "", "User": "", "Parent": ""}  # fmt: skip


def _inspect_one(ctx, name: str, type_: str) -> dict:
    from kiln.errors import NotFound
    from kiln.ops import images

    if type_ in ("container", "all"):
        found = _inspect_container(ctx, name)
        if found is not None:
            return found
        if type_ == "container":
            raise NotFound(f"inspecting object: no such container {name}")
    if type_ in ("image", "all"):
        from kiln.ops import manifests

        if manifests.exists(ctx, name):  # a list shows its manifests (podman manifest inspect)
            return manifests.inspect(ctx, name)
    try:
        data = images.inspect_image(ctx, name)
    except NotFound as exc:
        if type_ == "image":
            raise NotFound(f"inspecting object: {exc}") from None
        if type_ == "all":
            raise NotFound(f'inspecting object: no such object: "{name}"') from None
        raise
    return {**data, "Comment": images.podman_comment(data)}


def _inspect_container(ctx, name: str) -> dict | None:
    """A working container's inspect object, once kiln.ops.containers provides one."""
    import importlib

    from kiln.errors import NotFound

    if not ctx.store.list_containers():  # no working container at all (the usual case):
        return None  # the container code is not even imported
    try:
        mod = importlib.import_module("kiln.ops.containers")
    except ModuleNotFoundError:
        return None
    fn = getattr(mod, "inspect_container", None)
    if fn is None:
        return None
    try:
        return fn(ctx, name)
    except NotFound:
        return None

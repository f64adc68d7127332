"""``--format`` Go templates print what podman 4.3 prints for the same template and image.

Each expected string below is podman's output (``podman inspect --format``/``podman images
--format``) on an image with these labels, environment and layers.
"""

from __future__ import annotations

import pytest

from kiln.cli import render
from kiln.cli.go_template import GoTime
from kiln.errors import InvalidArgument

IMAGE = {
    "Id": "9fecc81f83b9",
    "Os": "linux",
    "Labels": {"maintainer": "me", "org.x.version": "1.2"},
    "Config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["/bin/sh"], "Labels": {"maintainer": "me"}},
    "RootFS": {"Layers": ["sha256:a", "sha256:b", "sha256:c"]},
    "RepoTags": [],
    "Annotations": None,
    "Many": list(range(100)),
    "Size": 1987870,
    "Created": GoTime("2026-12-06T04:53:48.675012827Z", "2026-12-06 04:53:48.675012827 +0000 UTC"),
}

PODMAN = [
    ('{{index .Labels "maintainer"}}', "me"),
    ('{{index .Labels "nokey"}}|{{.Labels.nokey}}', "|<no value>"),
    ("{{range .Config.Env}}{{.}},{{end}}", "PATH=/bin,A=1,"),
    (
        '{{.Annotations.k}}|{{index .Annotations "k"}}|{{range .Annotations}}x{{end}}',
        "<no value>||",
    ),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "maintainer=me;org.x.version=1.2;"),
    ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:PATH=/bin 1:A=1 "),
    ("{{range .RepoTags}}x{{else}}none{{end}}", "none"),
    ("{{if .Labels}}yes{{else}}no{{end}}", "yes"),
    ("{{if .RepoTags}}t{{else if .Labels}}l{{else}}n{{end}}", "l"),
    ("{{with .Config}}{{.Cmd}}{{end}}", "[/bin/sh]"),
    ("{{len .RootFS.Layers}}", "3"),
    ('{{join .Config.Env ","}}', "PATH=/bin,A=1"),
    ('{{upper .Os}} {{lower "AB"}} {{.Os | upper}}', "LINUX ab LINUX"),
    ("{{json .Config.Labels}}", '{"maintainer":"me"}'),
    ("{{json .Labels}}", '{"maintainer":"me","org.x.version":"1.2"}'),
    ("{{.Labels}}", "map[maintainer:me org.x.version:1.2]"),
    ("{{.Size}}", "1987870"),
    ("{{.Created}}", "2026-12-06 04:53:48.675012827 +0000 UTC"),
    ("{{json .Created}}", '"2026-12-06T04:53:48.675012827Z"'),
    ('{{printf "%s-%d" .Os .Size}}', "linux-1987870"),
    ('{{eq .Os "linux"}} {{ne .Os "linux"}}', "true false"),
    ("{{- range .Config.Env -}} {{.}} {{- end}}", "PATH=/binA=1"),
    ("{{$.Os}}{{range .RootFS.Layers}}{{$.Os}}{{end}}", "linuxlinuxlinuxlinux"),
    ("{{(index .RootFS.Layers 1)}}", "sha256:b"),
]


@pytest.mark.parametrize(("template", "expected"), PODMAN)
def test_template_prints_what_podman_prints(template, expected):
    assert render.go_template(template, IMAGE) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nope}}", "can't evaluate field Nope"),
        ("{{foo .Os}}", 'function "foo" not defined'),
        ("{{range .Config.Env}}", "unexpected EOF"),
        ("{{.Os", "unclosed action"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{" + "(" * 3000 + ".Os" + ")" * 3000 + "}}", "nested deeper than 100"),
        ("{{if true}}" * 3000 + "{{end}}" * 3000, "nested deeper than 100"),
        ('{{printf "%1000000000d" 1}}', "a width over 10000"),
        ("{{pad .Os 1000000000 0}}", "a width over 10000"),
        ("{{range $.Many}}" * 4 + "{{end}}" * 4, "more than 1000000 range steps"),
    ],
    ids=lambda v: v[:40],
)
def test_a_bad_template_is_one_clear_error(template, message):
    with pytest.raises(InvalidArgument, match=message):
        render.go_template(template, IMAGE)


def test_table_headings_are_podman_field_names():
    rows = [{"ID": "abc", "VirtualSize": 5, "CreatedSince": "now", "Labels": {"k": "v"}}]
    text = render.templated(
        'table {{.ID}}\\t{{.VirtualSize}}\\t{{.CreatedSince}}\\t{{index .Labels "k"}}',
        rows,
        headers={"ID": "IMAGE ID"},
    )
    assert text.splitlines() == [
        "IMAGE ID    VIRTUAL SIZE  CREATED SINCE  LABELS",
        "abc         5             now            v",
    ]


def test_a_bad_template_prints_no_row():
    # parsed before any row is rendered: nothing half-printed
    with pytest.raises(InvalidArgument):
        render.templated("{{.ID}}{{if}}", [{"ID": "a"}])


def test_blocks_side_by_side_are_not_nesting():
    assert render.go_template("{{if .Os}}x{{end}}" * 300, IMAGE) == "x" * 300


def test_a_struct_s_omitted_fields_read_as_go_s_zero_values():
    from kiln.cli.go_template import NIL_MAP, NIL_POINTER, NIL_SLICE, GoStruct

    zero = {"Cmd": NIL_SLICE, "Volumes": NIL_MAP, "Health": NIL_POINTER, "User": ""}
    obj = GoStruct({"Env": ["A=1"], "Volumes": None}, zero)
    tpl = (
        "{{.Cmd}}|{{json .Cmd}}|{{len .Cmd}}|{{range .Cmd}}x{{else}}none{{end}}|{{.Volumes}}"
        '|{{index .Volumes "k"}}|{{.Health}}|{{.User}}|{{if .Cmd}}y{{else}}n{{end}}|{{json .}}'
    )
    assert (
        render.templated(tpl, [obj])
        == '[]|null|0|none|map[]||<nil>||n|{"Env":["A=1"],"Volumes":null}\n'
    )
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        render.templated("{{.Nope}}", [obj])


NIL_PODMAN = [  # podman image inspect --format on an image imported without labels or Cmd
    ("{{.Config.Labels.version}}", "<no value>"),
    ('{{index .Config.Labels "x"}}', ""),
    ("{{len .Config.Labels}}|{{len .Config.Cmd}}", "0|0"),
    ("{{slice .Config.Cmd 0}}|{{slice .Config.Cmd 0 0}}|{{slice .Config.Cmd}}", "[]|[]|[]"),
    ("{{range .Config.Cmd}}x{{else}}empty{{end}}", "empty"),
    ("{{range .Config.Labels}}x{{else}}empty{{end}}", "empty"),
    ("{{if .Config.Labels}}y{{else}}n{{end}}{{if .Config.Cmd}}y{{else}}n{{end}}", "nn"),
    (
        "{{json .Config.Labels}}|{{.Config.Cmd}}|{{.Config.Labels}}|{{.HealthCheck}}",
        "null|[]|map[]|<nil>",
    ),
    ("{{json .}}", '{"Config":{"Labels":null},"HealthCheck":null}'),
]


def _label_less_image():
    from kiln.cli.go_template import NIL_MAP, NIL_POINTER, NIL_SLICE, GoStruct

    config = GoStruct({"Labels": NIL_MAP}, {"Labels": NIL_MAP, "Cmd": NIL_SLICE})
    return {"Config": config, "HealthCheck": NIL_POINTER}


@pytest.mark.parametrize(("template", "podman"), NIL_PODMAN)
def test_nil_maps_slices_and_pointers_read_as_podman_s(template, podman):
    assert render.go_template(template, _label_less_image()) == podman


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{slice .Config.Cmd 1}}", "index out of range"),
        ("{{index .Config.Cmd 0}}", "index out of range"),
        ("{{slice .Config.Labels 0}}", "can't slice"),
        ("{{.Config.Cmd.x}}", "can't evaluate field x"),
        ("{{.HealthCheck.Test}}", "nil pointer evaluating"),
        ("{{len .HealthCheck}}", "len of nil pointer"),
        ('{{index .HealthCheck "a"}}', "index of nil pointer"),
        ("{{range .HealthCheck}}x{{end}}", "range can't iterate over <nil>"),
    ],
)
def test_nil_values_refuse_what_go_refuses(template, error):
    with pytest.raises(InvalidArgument, match=error):
        render.go_template(template, _label_less_image())

"""Build records (`kiln build history`) and the report page (`kiln build report`), the page
rendered by headless Chromium and its screenshot checked."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

# 3 stages, 20 steps: files added then deleted or overwritten by later layers
TWENTY = """\
FROM busybox AS deps
RUN mkdir -p /out && dd if=/dev/zero of=/out/big bs=1k count=300 2>/dev/null
RUN echo dep1 > /out/a
RUN echo dep2 > /out/b
ENV A=1
RUN rm /out/big
FROM busybox AS tools
WORKDIR /t
COPY app/ /t/app
RUN echo tool > /t/tool
RUN echo tool-two-overwrites-it > /t/tool
LABEL x=y
FROM busybox
COPY --from=deps /out /deps
COPY --from=tools /t /tools
RUN dd if=/dev/zero of=/tmp/junk bs=1k count=200 2>/dev/null
RUN rm /tmp/junk
RUN echo final > /f
ENV B=2
CMD ["sh"]
"""


def kiln(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    environ = dict(os.environ, KILN_ROOT=env.store.root)
    proc = subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], capture_output=True,
                          text=True, env=environ, timeout=300)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA PNG (no PIL here)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = depth = ctype = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride) if kind else ():
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_twenty_step_report_renders_in_chromium(build_env, request, tmp_path):  # noqa: F811
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    ctx = build_env.context_dir(files={"app/main.py": "print(1)\n", "app/util.py": "x = 2\n"})
    result = build_env.build(ctx, TWENTY, tags=["twenty"])
    assert result.record_id
    record = build_env.store.get_build_record(result.record_id).record
    assert len(record["steps"]) == 20 and len(record["stages"]) == 3

    # the page and its screenshot stay in the test's own directory (pytest keeps the last
    # runs' under --basetemp), or under $KILN_TEST_OUTPUT when set (CI artifacts)
    out_dir = str(tmp_path)
    if os.environ.get("KILN_TEST_OUTPUT"):
        out_dir = os.path.join(os.environ["KILN_TEST_OUTPUT"], request.node.name)
        os.makedirs(out_dir, exist_ok=True)
    page = os.path.join(out_dir, "report.html")
    kiln(build_env, "build", "report", result.record_id[:8], "-o", page)
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert len(text.encode()) < 1_000_000
    # self-contained: nothing is fetched from anywhere
    for needle in ("http://", "https://", "<script", "<link", "@import", "src="):
        assert needle not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), needle
    assert text.count('<rect class="step ') == 20  # one bar per step on the timeline
    assert "[1] deps" in text and "[2] tools" in text and "[3] stage 3" in text
    assert "no earlier build of this step" in text
    # the layer-efficiency view: the file added then deleted, and the one overwritten
    assert "/tmp/junk" in text and "205 kB" in text
    eff = text[text.index('id="efficiency"') :]
    assert "/tmp/junk" in eff

    shot = os.path.join(out_dir, "report.png")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,1400", "file://" + page],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert os.path.exists(shot), proc.stderr[-2000:]
    with open(shot, "rb") as f:
        width, height, bpp, rows = decode_png(f.read())
    assert (width, height) == (1200, 1400)
    colors = {r[x : x + 3] for r in rows[::4] for x in range(0, width * bpp, bpp * 4)}
    assert len(colors) > 50, len(colors)  # not blank
    # the timeline's bars are drawn: the colour of built steps and of cached/FROM steps
    assert bytes((0x2F, 0x6F, 0xD0)) in colors
    assert bytes((0x9A, 0xA4, 0xB1)) in colors


def test_history_ls_inspect_rm_prune_and_no_secrets(build_env, tmp_path):  # noqa: F811
    secret = tmp_path / "secret"
    secret.write_text("SUPERSECRET-VALUE")
    ctx = build_env.context_dir(files={"Containerfile": (
        "FROM busybox\nRUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len\n")})  # fmt: skip
    kiln(build_env, "build", "-t", "one", "--secret", f"id=tok,src={secret}", ctx)
    failed = build_env.context_dir(
        "bad", files={"Containerfile": "FROM busybox\nRUN echo why-it-failed; exit 4\n"}
    )
    assert kiln(build_env, "build", failed, check=False).returncode == 4

    listing = kiln(build_env, "build", "history", "ls", "--format", "json")
    rows = json.loads(listing.stdout)
    assert [r["Status"] for r in rows] == ["failed", "completed"]
    assert rows[1]["Names"] == ["localhost/one:latest"] and rows[1]["Steps"] == 2
    table = kiln(build_env, "build", "history", "ls").stdout.splitlines()
    assert table[0].split()[:3] == ["BUILD", "ID", "CREATED"] and len(table) == 3

    newest = json.loads(kiln(build_env, "build", "history", "inspect").stdout)
    assert newest["status"] == "failed" and "exit status 4" in newest["error"]
    failing = newest["steps"][-1]
    assert failing["state"] == "failed" and failing["ended"] >= failing["started"]
    assert failing["output"] == "why-it-failed\n"
    done = json.loads(kiln(build_env, "build", "history", "inspect", rows[1]["ID"][:6]).stdout)
    assert done["options"]["secrets"] == ["tok"]
    raw = build_env.store.db.query("SELECT record FROM build_records")
    everything = b"".join(zlib.decompress(r[0]) for r in raw) + listing.stdout.encode()
    assert b"SUPERSECRET" not in everything and str(secret).encode() not in everything
    step = done["steps"][1]
    assert step["cache"]["hit"] is False and step["layer"]["size"] > 0
    assert step["output"] == ""  # only a failed step's output is kept
    assert step["layer"]["digest"] in [layer["digest"] for layer in done["result"]["layers"]]

    # records are metadata: removing the image and collecting garbage keeps them, and the
    # report of a build whose image is gone says so
    kiln(build_env, "rmi", "-f", "localhost/one")
    kiln(build_env, "image", "prune", "-a", "-f")
    assert json.loads(kiln(build_env, "build", "history", "inspect", done["id"]).stdout)
    page = tmp_path / "gone.html"
    kiln(build_env, "build", "report", done["id"], "-o", str(page))
    assert "the image is no longer in the store" in page.read_text()

    assert kiln(build_env, "build", "history", "rm", newest["id"]).stdout.strip() == newest["id"]
    missing = kiln(build_env, "build", "history", "inspect", newest["id"], check=False)
    assert missing.returncode == 125 and "not known" in missing.stderr
    assert kiln(build_env, "build", "history", "prune", "--all").stdout.strip() == (
        "Removed 1 build records"
    )
    assert kiln(build_env, "build", "history", "ls", "-q").stdout == ""
    empty = kiln(build_env, "build", "report", "-o", str(page), check=False)
    assert empty.returncode == 125 and "no build records" in empty.stderr

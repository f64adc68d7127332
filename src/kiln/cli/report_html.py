"""``kiln build report``: one self-contained HTML page about one build.

No script, no font, no image and no style sheet is fetched: the page is inline CSS and an
inline SVG timeline, so it opens offline, in a mail attachment or a CI artifact viewer.
Sections: the summary, a timeline of the steps across stages (bars on one time axis,
so what ran in parallel lines up and a stage's wait for the stages it needs shows as a
hatched bar), the steps with cache hits and miss reasons, the layers with their sizes,
the layer-efficiency view (bytes later layers hid, the biggest files of each layer), the
Dockerfile, options and warnings. Everything from the record is escaped.
"""

from __future__ import annotations

import html
import time
from typing import Any

from kiln.cli.render import human_size

__all__ = ["render_report"]

_COLORS = {"cached": "#3a9a5b", "built": "#2f6fd0", "done": "#9aa4b1", "failed": "#d0453a",
           "cancelled": "#d0a03a", "running": "#d0453a"}  # fmt: skip

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f6f7f9;color:#1d232b}
header{background:#1d232b;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:20px}
header .meta{color:#b9c2cc;font-size:13px}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:6px;margin:18px 0;padding:14px 18px}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{color:#5b6672;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f5f7;padding:10px;overflow:auto;max-height:420px;margin:0}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #e1e5ea;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}
.tag{display:inline-block;border-radius:3px;padding:0 6px;color:#fff;font-size:12px}
.bar{background:#2f6fd0;height:8px;border-radius:2px;min-width:1px}
.waste{background:#d0453a}
.muted{color:#6b7580}
.legend span{margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:04.1f}s"


def _state(step: dict[str, Any]) -> str:
    cache = step.get("cache") or {}
    if step.get("state") in ("failed", "cancelled", "running"):
        return str(step["state"])
    if cache.get("hit"):
        return "cached"
    if cache:
        return "built"
    return "done"


def render_report(record: dict[str, Any]) -> str:
    """The page for a record (``kiln.ops.build_history.report_data``)."""
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>kiln build {_e(record.get('id', ''))}</title><style>{_CSS}</style></head><body>",
        _header(record),
        "<main>",
        _summary(record),
        _timeline(record),
        _steps(record),
        _layers(record),
        _efficiency(record),
        _sources(record),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _header(record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    names = ", ".join(result.get("names") or []) or "no tag"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.get("created") or 0))
    status = record.get("status", "")
    color = {"completed": "#3a9a5b", "failed": "#d0453a"}.get(status, "#d0a03a")
    return (f"<header><h1>kiln build {_e(record.get('id', ''))} "
            f"<span class=\"tag\" style=\"background:{color}\">{_e(status)}</span></h1>"
            f"<div class=\"meta\">{_e(when)} · {_e(record.get('dockerfile_name', ''))} · "
            f"{_e(names)}</div></header>")  # fmt: skip


def _summary(record: dict[str, Any]) -> str:
    steps = record.get("steps") or []
    hits = sum(1 for s in steps if _state(s) == "cached")
    built = sum(1 for s in steps if _state(s) == "built")
    took = (record.get("ended") or 0) - (record.get("created") or 0)
    result = record.get("result") or {}
    layers = result.get("layers") or []
    size = sum(int(layer.get("size") or 0) for layer in layers)
    cards = [("time", _secs(took)), ("steps", len(steps)), ("cache hits", hits),
             ("built", built), ("stages", len(record.get("stages") or [])),
             ("layers", len(layers)), ("image size", human_size(size))]  # fmt: skip
    eff = record.get("efficiency")
    if eff:
        cards.append(("efficiency", f"{eff['efficiency'] * 100:.1f}%"))
        cards.append(("wasted", human_size(eff["wasted_bytes"])))
    body = "".join(f"<div class=\"card\"><span class=\"muted\">{_e(k)}</span><b>{_e(v)}</b></div>"
                   for k, v in cards)  # fmt: skip
    image = result.get("image_id") or ""
    extra = f"<p>Image <code>{_e(image)}</code></p>" if image else ""
    if record.get("error"):
        extra += f'<p style="color:#d0453a">Error: {_e(record["error"])}</p>'
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{body}</div>{extra}</section>'


def _timeline(record: dict[str, Any]) -> str:
    steps = [s for s in record.get("steps") or [] if s.get("started")]
    stages = {s.get("stage"): s for s in record.get("stages") or []}
    if not steps:
        return (
            '<section id="timeline"><h2>Timeline</h2><p class="muted">No steps ran.</p></section>'
        )
    t0 = min([float(record.get("created") or steps[0]["started"])] + [s["started"] for s in steps])
    t1 = max([float(s.get("ended") or s["started"]) for s in steps] + [record.get("ended") or 0])
    span = max(t1 - t0, 0.001)
    label_w, width, row_h = 300, 1000, 18
    plot = width - label_w - 20
    order = sorted(steps, key=lambda s: (s.get("stage", 0), s.get("step", 0)))
    height = 30 + row_h * (len(order) + len(stages)) + 10
    out = [f"<svg id=\"timeline-svg\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} "
           f"{height}\" width=\"100%\" role=\"img\" aria-label=\"step timeline\">",
           "<defs><pattern id=\"wait\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
           "patternTransform=\"rotate(45)\"><rect width=\"3\" height=\"6\" fill=\"#d6dbe1\"/>"
           "</pattern></defs>"]  # fmt: skip
    for k in range(6):  # the time axis
        x = label_w + plot * k / 5
        out.append(f"<line x1=\"{x:.1f}\" y1=\"20\" x2=\"{x:.1f}\" y2=\"{height}\" "
                   f"stroke=\"#eef0f3\"/><text x=\"{x:.1f}\" y=\"14\" font-size=\"11\" "
                   f"fill=\"#6b7580\" text-anchor=\"middle\">{_secs(span * k / 5)}</text>")  # fmt: skip
    y = 26
    current = None
    for step in order:
        if step.get("stage") != current:
            current = step.get("stage")
            stage = stages.get(current, {})
            name = stage.get("name") or f"stage {current}"
            started = min(s["started"] for s in order if s.get("stage") == current)
            out.append(f"<text x=\"4\" y=\"{y + 13}\" font-size=\"12\" font-weight=\"bold\" "
                       f"fill=\"#1d232b\">[{_e(current)}] {_e(name)}</text>")  # fmt: skip
            if stage.get("deps") and started > t0:
                w = plot * (started - t0) / span
                out.append(f"<rect x=\"{label_w}\" y=\"{y + 4}\" width=\"{w:.1f}\" height=\"10\" "
                           f"fill=\"url(#wait)\"><title>waited {_secs(started - t0)} for "
                           f"stages {_e(stage.get('deps'))}</title></rect>")  # fmt: skip
            y += row_h
        state = _state(step)
        start = float(step["started"])
        end = float(step.get("ended") or start)
        x = label_w + plot * (start - t0) / span
        w = max(2.0, plot * (end - start) / span)
        text = str(step.get("text", ""))
        short = text if len(text) <= 42 else text[:41] + "…"
        reason = (step.get("cache") or {}).get("reason") or ""
        tip = f"{text} — {state} {_secs(end - start)}" + (f" — {reason}" if reason else "")
        out.append(f"<text x=\"16\" y=\"{y + 13}\" font-size=\"11\" fill=\"#3b4550\">"
                   f"{_e(step.get('step'))} {_e(short)}</text>"
                   f"<rect class=\"step {state}\" x=\"{x:.1f}\" y=\"{y + 3}\" width=\"{w:.1f}\" "
                   f"height=\"12\" rx=\"2\" fill=\"{_COLORS[state]}\"><title>{_e(tip)}</title>"
                   "</rect>")  # fmt: skip
        y += row_h
    out.append("</svg>")
    legend = "".join(f"<span><i style=\"background:{c}\"></i>{k}</span>"
                     for k, c in _COLORS.items() if k != "running")  # fmt: skip
    legend += '<span><i style="background:url(#wait);background:#d6dbe1"></i>waiting</span>'
    return (f"<section id=\"timeline\"><h2>Timeline</h2>{''.join(out)}"
            f"<div class=\"legend muted\">{legend}</div></section>")  # fmt: skip


def _steps(record: dict[str, Any]) -> str:
    rows = []
    for step in sorted(record.get("steps") or [], key=lambda s: (s.get("stage"), s.get("step"))):
        state = _state(step)
        took = None
        if step.get("started") and step.get("ended"):
            took = step["ended"] - step["started"]
        layer = step.get("layer") or {}
        reason = (step.get("cache") or {}).get("reason") or ""
        rows.append(
            f'<tr><td>{_e(step.get("stage"))}</td><td class="n">{_e(step.get("step"))}</td>'
            f"<td><code>{_e(step.get('text'))}</code></td>"
            f'<td><span class="tag" style="background:{_COLORS[state]}">{state}</span></td>'
            f'<td class="n">{_secs(took)}</td><td>{_e(reason)}</td>'
            f'<td class="n">{human_size(layer["size"]) if layer else ""}</td></tr>'
        )
        if state == "failed" and step.get("output"):
            rows.append(f'<tr><td></td><td colspan="6"><pre>{_e(step["output"])}</pre></td></tr>')
    return ("<section id=\"steps\"><h2>Steps and cache</h2><table><tr><th>stage</th>"
            "<th class=\"n\">step</th><th>instruction</th><th>state</th><th class=\"n\">time</th>"
            "<th>why it missed the cache</th><th class=\"n\">layer</th></tr>"
            + "".join(rows) + "</table></section>")  # fmt: skip


def _layers(record: dict[str, Any]) -> str:
    layers = (record.get("result") or {}).get("layers") or []
    if not layers:
        return '<section id="layers"><h2>Layers</h2><p class="muted">No layers.</p></section>'
    biggest = max(int(layer.get("uncompressed_size") or layer.get("size") or 0)
                  for layer in layers) or 1  # fmt: skip
    rows = []
    for i, layer in enumerate(layers):
        size = int(layer.get("uncompressed_size") or 0)
        pct = 100 * size / biggest
        rows.append(
            f'<tr><td class="n">{i}</td><td><code>{_e(str(layer.get("digest", ""))[:19])}</code>'
            f'</td><td class="n">{human_size(int(layer.get("size") or 0))}</td>'
            f'<td class="n">{human_size(size)}</td><td style="width:18%"><div class="bar" '
            f'style="width:{pct:.1f}%"></div></td><td><code>'
            f"{_e(str(layer.get('created_by', ''))[:160])}</code></td></tr>"
        )
    return ("<section id=\"layers\"><h2>Layers</h2><table><tr><th class=\"n\">#</th>"
            "<th>digest</th><th class=\"n\">compressed</th><th class=\"n\">size</th><th></th>"
            "<th>created by</th></tr>" + "".join(rows) + "</table></section>")  # fmt: skip


def _efficiency(record: dict[str, Any]) -> str:
    eff = record.get("efficiency")
    if not eff:
        if not (record.get("result") or {}).get("image_id"):
            why = "the build produced no image"
        elif not record.get("image_present"):
            why = "the image is no longer in the store"
        else:
            why = "nothing to show"
        return (f"<section id=\"efficiency\"><h2>Layer efficiency</h2><p class=\"muted\">"
                f"{why}</p></section>")  # fmt: skip
    head = (f"<p><b>{eff['efficiency'] * 100:.1f}%</b> efficient: "
            f"<b>{human_size(eff['wasted_bytes'])}</b> of {human_size(eff['total_bytes'])} in "
            "files that a later layer overwrote or deleted.</p>")  # fmt: skip
    wasted = "".join(
        f'<tr><td><code>/{_e(w["path"])}</code></td><td class="n">{human_size(w["size"])}</td>'
        f'<td class="n">{_e(w["layer"])}</td></tr>'
        for w in eff.get("wasted_files") or []
    )
    if wasted:
        wasted = ("<h3>Files added, then overwritten or deleted later</h3><table><tr><th>path</th>"
                  "<th class=\"n\">size</th><th class=\"n\">added in layer</th></tr>"
                  + wasted + "</table>")  # fmt: skip
    total = max((u["bytes"] for u in eff["layers"]), default=0) or 1
    per = []
    for u in eff["layers"]:
        big = "<br>".join(f"<code>/{_e(p)}</code> {human_size(s)}" for p, s in u["biggest"])
        removed = "<br>".join(f"<code>/{_e(p)}</code>" for p in u.get("removed") or [])
        per.append(
            f'<tr><td class="n">{u["index"]}</td><td class="n">{u["files"]}</td>'
            f'<td class="n">{human_size(u["bytes"])}</td><td class="n">'
            f'{human_size(u["wasted"])}</td><td style="width:14%"><div class="bar" '
            f'style="width:{100 * u["bytes"] / total:.1f}%"></div><div class="bar waste" '
            f'style="width:{100 * u["wasted"] / total:.1f}%"></div></td><td>{big}</td>'
            f"<td>{removed}</td></tr>"
        )
    table = ("<h3>Per layer</h3><table><tr><th class=\"n\">#</th><th class=\"n\">files</th>"
             "<th class=\"n\">bytes</th><th class=\"n\">hidden later</th><th></th>"
             "<th>biggest files</th><th>deletes</th></tr>" + "".join(per) + "</table>")  # fmt: skip
    return f'<section id="efficiency"><h2>Layer efficiency</h2>{head}{wasted}{table}</section>'


def _sources(record: dict[str, Any]) -> str:
    opts = record.get("options") or {}
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                   for k, v in opts.items() if v not in (None, "", [], {}, False))  # fmt: skip
    warnings = "".join(f"<li>{_e(w)}</li>" for w in record.get("warnings") or [])
    warn = f"<h3>Warnings</h3><ul>{warnings}</ul>" if warnings else ""
    return (f"<section id=\"dockerfile\"><h2>{_e(record.get('dockerfile_name', 'Dockerfile'))}"
            f"</h2><pre>{_e(record.get('dockerfile', ''))}</pre></section>"
            f"<section id=\"options\"><h2>Options</h2><table>{rows}</table>{warn}</section>")  # fmt: skip

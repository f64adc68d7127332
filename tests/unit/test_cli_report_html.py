"""The build report page: everything from the record escaped, nothing fetched."""

from __future__ import annotations

from kiln.cli.report_html import render_report


def test_failed_build_page_escapes_what_the_build_wrote():
    page = render_report({
        "id": "abc", "status": "failed", "created": 1.0, "ended": 3.0,
        "dockerfile": "FROM x\nRUN </pre><script>alert(1)</script>\n",
        "stages": [{"stage": 1, "name": "a<b", "deps": []}],
        "steps": [{"stage": 1, "step": 1, "text": "FROM x", "started": 1.0, "ended": 1.5,
                   "state": "done"},
                  {"stage": 1, "step": 2, "text": "RUN <img src=x onerror=alert(1)>",
                   "started": 1.5, "ended": 3.0, "state": "failed",
                   "cache": {"hit": False, "reason": "no earlier build of this step"},
                   "output": "<script>alert(2)</script>"}],
        "result": {}, "error": "boom <b>", "options": {"tags": ["<x>"]},
    })  # fmt: skip
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page  # the failed step's output, shown
    assert "the build produced no image" in page and "[1] a&lt;b" in page
    assert page.count('<rect class="step ') == 2 and 'class="step failed"' in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")

"""A self-contained HTML page: escaped text, tables, notes, and PNGs inlined as base64."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212121;
       max-width: 1180px; margin: 0 auto; padding: 24px; background: #fafafa; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { border-bottom: 2px solid #e0e0e0; padding-bottom: 4px;
       margin-top: 40px; } h3 { font-size: 17px; margin: 22px 0 6px; }
section { background: white; border: 1px solid #e0e0e0; border-radius: 6px; padding: 6px 22px 18px;
          margin-bottom: 22px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { border: 1px solid #e0e0e0; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff8e1; font-weight: 600; }
img { max-width: 100%; height: auto; display: block; margin: 10px 0; border: 1px solid #eeeeee; }
.note { background: #fff3e0; border-left: 4px solid #ef6c00; padding: 8px 12px; margin: 10px 0; }
.badge { display: inline-block; border-radius: 4px; padding: 0 7px; color: white; font-size: 12px;
         font-weight: 600; }
.ok { background: #2e7d32; } .bad { background: #c62828; } .warn { background: #ef6c00; }
.neutral { background: #757575; }
.words { font-size: 16px; background: #e3f2fd; border-left: 4px solid #1565c0; padding: 8px 12px; }
pre { background: #f5f5f5; padding: 8px; overflow-x: auto; font-size: 12px; white-space: pre-wrap; }
nav a { margin-right: 14px; } details { margin: 8px 0; } summary { cursor: pointer; color: #1565c0; }
"""

GOOD_WORDS = {"SUCCEEDED", "Completed", "InService", "NoIssuesFound", "passed", "deploy", "succeeded", "same"}
BAD_WORDS = {
    "FAILED", "Failed", "IssuesFound", "Error", "TIMED_OUT", "ABORTED", "failed", "RuleIssuesFound",
    "RuleErrors", "RulesDidNotRun", "DIFFERENT",
}  # fmt: skip


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def badge(word: Any) -> str:
    text = str(word)
    kind = "ok" if text in GOOD_WORDS else "bad" if text in BAD_WORDS else "neutral"
    return f'<span class="badge {kind}">{escape(text)}</span>'


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, (dict, list)):
        return f"<td><code>{escape(json.dumps(value, default=str))}</code></td>"
    return f"<td>{escape('' if value is None else value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], highlight: set[int] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        marker = ' class="best"' if highlight and index in highlight else ""
        body.append(f"<tr{marker}>" + "".join(cell(v) for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of label and value; values already holding HTML pass through as is."""
    rows = []
    for label, value in pairs:
        if value is None or value == "":
            continue
        shown = value.html if isinstance(value, Raw) else escape(value)
        rows.append(f"<tr><th>{escape(label)}</th><td>{shown}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


class Raw:
    """HTML that `facts` must not escape (a badge)."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def unavailable(what: str, reason: str) -> str:
    return f'<p class="note"><strong>{escape(what)} not available:</strong> {escape(reason)}</p>'


def image(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def document(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """sections: (anchor id, heading, inner HTML)."""
    nav = "".join(f'<a href="#{escape(anchor)}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(
        f'<section id="{escape(anchor)}"><h2>{escape(heading)}</h2>{inner}</section>'
        for anchor, heading, inner in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(subtitle)}</p><nav>{nav}</nav>{body}</body></html>\n"
    )

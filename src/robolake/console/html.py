"""HTML for the console's pages: one layout, tables, numbers; every value escaped here.

The pages are rendered on the server from the same data the ``/api/...`` routes answer with;
charts and the episode player are drawn in the browser by ``static/console.js`` from a JSON
block the page carries (``<script type="application/json" id="page-data">``). Nothing is
loaded from anywhere but the console itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

NAV = (
    ("/", "stack", "Stack"),
    ("/versions", "versions", "Versions"),
    ("/metrics", "metrics", "Metrics"),
    ("/jobs", "jobs", "Jobs"),
)
NAV_EPISODES = ("/episodes", "episodes", "Episodes")


def e(value: object) -> str:
    return escape(str(value), quote=True)


def url(path: str, **params: object) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path


def size(n: float) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def when(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def page(title: str, active: str, body: str, data: Any = None) -> str:
    """A whole page: header with the navigation, `body`, and the page's data for the script."""
    links = "".join(
        f'<a href="{href}" class="{"active" if key == active else ""}">{label}</a>'
        for href, key, label in (*NAV, NAV_EPISODES)
    )
    payload = ""
    if data is not None:
        # "</" would end the script element early; JSON allows "<\/".
        text = json.dumps(data).replace("</", "<\\/")
        payload = f'<script type="application/json" id="page-data">{text}</script>'
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<title>{e(title)} · robolake console</title><link rel=icon href="data:,">'
        '<link rel=stylesheet href="/static/console.css"></head><body>'
        f"<header><span class=brand>robolake</span><nav>{links}</nav></header>"
        f"<main><h1>{e(title)}</h1>{body}</main>{payload}"
        '<script src="/static/console.js"></script></body></html>\n'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table; cells are HTML already (escape values with `e`)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def badge(ok: bool, yes: str = "healthy", no: str = "down") -> str:
    return f'<span class="badge {"ok" if ok else "bad"}">{e(yes if ok else no)}</span>'


def section(title: str, body: str, *, ident: str = "") -> str:
    attr = f' id="{e(ident)}"' if ident else ""
    return f"<section{attr}><h2>{e(title)}</h2>{body}</section>"


def error_page(status: int, message: str) -> str:
    body = f'<p class="error" id="error">{e(message)}</p><p><a href="/">Back to the stack page</a></p>'
    return page(f"Error {status}", "", body)


def form(action: str, fields: Sequence[tuple[str, str, str]], submit: str) -> str:
    """A GET form of (name, label, value) text fields."""
    inputs = "".join(
        f'<label>{e(label)} <input name="{e(name)}" value="{e(value)}"></label>' for name, label, value in fields
    )
    return f'<form method=get action="{e(action)}" class=inline>{inputs}<button type=submit>{e(submit)}</button></form>'


def short(commit_id: str) -> str:
    return f'<code title="{e(commit_id)}">{e(commit_id[:12])}</code>'


def metadata(meta: dict[str, str]) -> str:
    if not meta:
        return '<span class="muted">none</span>'
    return "<dl class=meta>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in sorted(meta.items())) + "</dl>"

"""report.html: the findings and sections (`report.sections`) as one HTML page, with a table of
contents, its tables rendered from their Markdown, every text's inline Markdown (**bold**,
`code`, [links](url)) as HTML, and its figures linked or embedded, each with a caption saying
what it shows (`sections.figure_caption`)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ssmprobe.report.sections import Section, link

_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)"
)


def inline(text: str) -> str:
    """One line of Markdown as HTML: escaped first, then `code`, **bold** and [text](url)."""
    out, end = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[end : match.start()]))
        if match["code"] is not None:
            out.append(f"<code>{html.escape(match['code'])}</code>")
        elif match["bold"] is not None:
            out.append(f"<strong>{inline(match['bold'])}</strong>")
        else:
            url = match["url"]
            safe = not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith(
                ("http:", "https:", "mailto:")
            )  # no javascript: links
            href = html.escape(url if safe else "#", quote=True)
            out.append(f'<a href="{href}">{inline(match["text"])}</a>')
        end = match.end()
    out.append(html.escape(text[end:]))
    return "".join(out)


def _anchor(i: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48]
    return f"s{i}-{slug}" if slug else f"s{i}"


def render_html(
    findings: Sequence[str], sections: Sequence[Section], out: Path, self_contained: bool = False
) -> str:
    """One page that links each image by its path relative to `out`, where the page and the
    PNGs are written: a small page whose figures are not stored twice. `self_contained` embeds
    them as data URIs instead, for a page that opens anywhere on its own."""
    anchors = [_anchor(i, section.title) for i, section in enumerate(sections, start=1)]
    body = ["<h1>ssmprobe report</h1>", "<ul>", *(f"<li>{inline(f)}</li>" for f in findings)]
    body.append("</ul>")
    body += ['<nav class="toc"><h2>Contents</h2>', "<ol>"]
    body += [
        f'<li><a href="#{a}">{inline(s.title)}</a></li>'
        for a, s in zip(anchors, sections, strict=True)
    ]
    body += ["</ol>", "</nav>"]
    for anchor, section in zip(anchors, sections, strict=True):
        body += [
            f'<h2 id="{anchor}">{inline(section.title)}</h2>',
            *([f"<p>{inline(section.sentence)}</p>"] if section.sentence else []),
        ]
        if section.notes:
            body += ["<ul>", *(f"<li>{inline(n)}</li>" for n in section.notes), "</ul>"]
        if section.table:
            body.append(_html_table(section.table))
        for path in section.images:
            if self_contained:
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            else:
                src = quote(link(path, out))  # leaves nothing to escape
            caption = section.caption(path)
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(caption)}">'
                f"<figcaption>{inline(caption)}</figcaption></figure>"
            )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<link rel="icon" href="data:,">',  # no favicon request, so no console error
            "<title>ssmprobe report</title>",
            f"<style>{_CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
    "td.n{text-align:right}img{max-width:100%}figure{margin:1em 0}"
    "figcaption{font-size:14px;color:#333}nav.toc{background:#f6f6f6;padding:.2em 1em}"
)


def _html_table(markdown: str) -> str:
    """table.md's pipe table as HTML; its other lines (caption, footnotes) as paragraphs."""
    out, rows = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace(r"\|", "|") for c in line.strip("|").split(" | ")]
            if not set("".join(cells)) <= set("-:| "):
                rows.append(cells)
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    header, *body = rows
    table = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr>"]
    for row in body:
        cells = "".join(
            f'<td class="n">{inline(c)}</td>' if _numeric(c.strip("*")) else f"<td>{inline(c)}</td>"
            for c in row
        )
        table.append(f"<tr>{cells}</tr>")
    caption = out[:1]
    return "\n".join([*caption, *table, "</table>", *out[1:]])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

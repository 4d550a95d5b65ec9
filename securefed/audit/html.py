"""The audit as one self-contained HTML page: readable offline, nothing fetched.

The page is the Markdown view rendered by markdown-it-py (CommonMark + tables) with raw HTML
and links disabled, plots inlined as ``data:image/png`` URIs and the CSS inline. An image in
the embedded threat model that points anywhere but a ``data:`` URI is replaced by its alt
text, so the page never makes a request.
"""

from __future__ import annotations

import base64
import html

from markdown_it import MarkdownIt

from securefed.audit.markdown import (
    body_markdown,
    flags_markdown,
    head_markdown,
    plots_markdown,
    title_markdown,
    verdict_markdown,
)
from securefed.audit.plots import Plot
from securefed.audit.report import CRITICAL

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem;
       margin: 2rem auto; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; }
img { max-width: 100%; display: block; margin: 1rem 0; }
.flags { border: 3px solid #cf222e; background: #fff5f5; padding: .2rem 1.2rem; margin: 1.5rem 0; }
.flags.clear { border-color: #1a7f37; background: #f0fff4; }
.flags.caveats { border-color: #bf8700; background: #fff8c5; }
.flags h2 { border: none; color: #cf222e; margin-top: .8rem; }
.flags.caveats h2, .flags.caveats strong { color: #7d4e00; }
.flags.clear h2 { color: #1a7f37; }
.flags strong { color: #cf222e; }
.institutions { border-left: 6px solid #0550ae; padding: .1rem 0 .1rem 1.2rem; margin: 1.5rem 0; }
"""


def _markdown_it() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable(["link", "autolink"])

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        src = token.attrGet("src") or ""
        alt = html.escape(token.content, quote=True)
        if not src.startswith("data:image/png;base64,"):
            return f"[image not embedded: {alt}]"
        return f'<img src="{src}" alt="{alt}">'

    md.add_render_rule("image", image)
    return md


def data_uri(plot: Plot) -> str:
    assert plot.png is not None
    return "data:image/png;base64," + base64.b64encode(plot.png).decode("ascii")


def render_html(audit: dict, plots: list[Plot]) -> str:
    """The whole page as one string."""
    md = _markdown_it()
    title = html.escape(f"Audit: {audit['run']['name']} ({audit['run']['folder']})")
    severities = {f["severity"] for f in audit["flags"]}
    flag_class = (
        "flags" if CRITICAL in severities else "flags caveats" if severities else "flags clear"
    )
    body = md.render(title_markdown(audit))
    body += md.render(head_markdown(audit))
    body += f'<section class="{flag_class}">\n{md.render(flags_markdown(audit))}</section>\n'
    verdict = "\n\n".join(verdict_markdown(audit))
    body += f'<section id="institutions" class="institutions">\n{md.render(verdict)}</section>\n'
    body += md.render(plots_markdown(plots, data_uri))
    body += md.render(body_markdown(audit, plots, data_uri))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )

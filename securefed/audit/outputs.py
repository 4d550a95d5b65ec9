"""The files of an audit folder, as bytes, from the audit record alone.

``write_audit`` writes exactly these; ``audit --verify`` renders them again from the record
it rebuilt (or, for an audit folder alone, from its own ``audit.json``) and compares them
byte for byte, so the Markdown, the HTML and the plots can say nothing the record does not.
"""

from __future__ import annotations

import json

from securefed.audit.html import render_html
from securefed.audit.markdown import render_markdown
from securefed.audit.plots import Plot, audit_plots
from securefed.run.folder import AUDIT_RECORD

AUDIT_MARKDOWN = "audit.md"
AUDIT_HTML = "audit.html"


def plot_rel(plot: Plot) -> str:
    return f"plots/{plot.name}.png"


def audit_record_text(audit: dict) -> str:
    return json.dumps(audit, indent=2, allow_nan=False) + "\n"


def audit_outputs(audit: dict) -> tuple[dict[str, bytes], list[str]]:
    """(every file of the audit folder: relative path -> bytes, the plot paths that must
    not exist because their plot does not apply to this run)."""
    plots = audit_plots(audit)
    files = {
        AUDIT_RECORD: audit_record_text(audit).encode(),
        AUDIT_MARKDOWN: render_markdown(audit, plots, plot_rel).encode(),
        AUDIT_HTML: render_html(audit, plots).encode(),
    }
    files.update({plot_rel(p): p.png for p in plots if p.png is not None})
    return files, [plot_rel(p) for p in plots if p.png is None]

"""The threat model the audit states: ``threat_model.md`` at the repository root, split up.

The audit embeds the document's summary (the text before its first ``##`` heading, or a
section titled "Summary") and every ``##`` section verbatim, with the file's SHA-256, so a
reader of the audit sees exactly which model the run was judged under. A missing file is
recorded as absent (and flagged), never silently skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import securefed

THREAT_MODEL_FILE = "threat_model.md"


def default_threat_model_path() -> Path:
    """``threat_model.md`` next to the ``securefed`` package (the repository root)."""
    return Path(securefed.__file__).resolve().parent.parent / THREAT_MODEL_FILE


def threat_model_section(path: Path | None = None) -> dict:
    """``{"present", "source", "sha256", "title", "summary", "sections": [{title, text}]}``."""
    path = path or default_threat_model_path()
    if not path.is_file():
        return {
            "present": False,
            "source": THREAT_MODEL_FILE,
            "sha256": None,
            "title": None,
            "summary": None,
            "sections": [],
        }
    data = path.read_bytes()
    title, preamble, sections = _split(data.decode("utf-8"))
    summary = preamble
    for section in sections:
        if section["title"].strip().lower() == "summary":
            summary = section["text"]
            break
    return {
        "present": True,
        "source": THREAT_MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "title": title,
        "summary": summary,
        "sections": sections,
    }


def _split(text: str) -> tuple[str | None, str, list[dict]]:
    """(``#`` title, text before the first ``##``, ``##`` sections), ignoring fenced code."""
    title: str | None = None
    preamble: list[str] = []
    sections: list[dict] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            sections.append({"title": line[3:].strip(), "lines": []})
        elif not in_fence and line.startswith("# ") and title is None and not sections:
            title = line[2:].strip()
        elif sections:
            sections[-1]["lines"].append(line)
        else:
            preamble.append(line)
    return (
        title,
        "\n".join(preamble).strip(),
        [{"title": s["title"], "text": "\n".join(s["lines"]).strip()} for s in sections],
    )

"""MkDocs hooks: pages the site shows but does not own.

The configuration reference is generated from the schema (``config_reference``). Documents
that live beside what they describe (the threat model at the repository root, the deployment
guide in ``deploy/``, the committed example audit and sweep) are served from where they are,
not copied into ``docs/``, so each has one source and the site cannot drift from it.
"""

from __future__ import annotations

from pathlib import Path

from config_reference import render  # the hooks' folder is on sys.path (MkDocs >= 1.5)
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]

# repository file or folder -> where it appears in the site (a folder keeps its layout, so the
# relative links of its pages, e.g. an audit's plots/, still resolve)
SERVED = {
    "threat_model.md": "threat-model.md",
    "deploy/README.md": "deployment.md",
    "audits/README.md": "audits/reading.md",
    "audits/example": "audits/example",
    "audits/sweeps/FINDINGS.md": "sweeps/findings.md",
    "audits/sweeps/table.md": "sweeps/table.md",
    "audits/sweeps/plots": "sweeps/plots",
    "benchmarks/default_profile.md": "benchmarks/default-profile.md",
    "configs/paper/README.md": "benchmarks/paper-grid.md",
}
# what of a served folder becomes part of the site
SERVED_SUFFIXES = (".md", ".png")
# the example audit's Markdown becomes its folder's index page
RENAMED = {"audits/example/audit.md": "audits/example/index.md"}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated configuration reference and the served repository documents."""
    files.append(File.generated(config, "configuration.md", content=render()))
    for source, target in SERVED.items():
        path = ROOT / source
        sources = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in sources:
            if not file.is_file() or file.suffix not in SERVED_SUFFIXES:
                continue
            inner = file.relative_to(path).as_posix() if path.is_dir() else ""
            uri = RENAMED.get(f"{source}/{inner}", f"{target}/{inner}" if inner else target)
            files.append(File.generated(config, uri, abs_src_path=str(file)))
    return files

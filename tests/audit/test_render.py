"""The HTML page is self-contained and renders with its plots in a real headless browser."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from audit_runs import BOTH_RUNS

from securefed.audit import build_audit
from securefed.audit.html import render_html
from securefed.audit.plots import audit_plots


class _References(HTMLParser):
    """Every tag name and every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        self.urls += [
            v or "" for k, v in attrs if k in ("src", "href", "srcset", "action", "poster")
        ]
        self.styles += [v or "" for k, v in attrs if k == "style"]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def _assert_self_contained(page: str) -> _References:
    refs = _References()
    refs.feed(page)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(refs.tags)
    assert all(u.startswith("data:image/png;base64,") for u in refs.urls), refs.urls
    for css in refs.styles:
        assert "@import" not in css and "url(" not in css
    return refs


@pytest.mark.parametrize(("kind", "plots"), [("plain", 2), ("private", 4)])
def test_html_has_no_external_references(kind, plots, request):
    audit_dir = request.getfixturevalue(f"{kind}_audit_dir")
    refs = _assert_self_contained((audit_dir / "audit.html").read_text())
    assert len(refs.urls) == plots  # every plot that applies, inlined (no epsilon plots without DP)
    for url in refs.urls:
        assert base64.b64decode(url.split(",", 1)[1])[:4] == b"\x89PNG"


def test_links_and_remote_images_in_the_threat_model_are_not_embedded(plain_run, tmp_path):
    (tmp_path / "threat_model.md").write_text(
        "# T\n\nSee [the paper](https://example.org/p) and <https://example.org>.\n\n"
        "## Images\n\n![remote](https://example.org/x.png)\n\n<script>alert(1)</script>\n"
    )
    audit = build_audit(plain_run, threat_model=tmp_path / "threat_model.md")
    page = render_html(audit, audit_plots(audit))
    _assert_self_contained(page)
    assert "[image not embedded: remote]" in page and "&lt;script&gt;" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
@pytest.mark.parametrize("kind", BOTH_RUNS)
def test_chromium_renders_the_page_with_its_plots(kind, request, tmp_path):
    audit_dir = request.getfixturevalue(f"{kind}_audit_dir")
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--force-device-scale-factor=0.5",
            "--window-size=1200,40000",  # CSS pixels: the whole page, drawn at half scale
            (audit_dir / "audit.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(np.int16)

    def count(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - rgb).sum(axis=1) < 12).sum())

    # The plots' bar and line colours appear nowhere in the page's CSS: seeing them means the
    # inlined PNGs were decoded and drawn.
    assert count((0x1F, 0x6F, 0xEB)) > 1000, "federated blue (accuracy plots) missing"
    if kind == "private":  # baselines and epsilon plots
        assert count((0x1F, 0x6F, 0xEB)) > 5000, "federated blue (epsilon plots) missing"
        assert count((0x82, 0x50, 0xDF)) > 500, "centralized purple (accuracy plot) missing"
        assert count((0x9A, 0x67, 0x00)) > 500, "isolated ochre (accuracy plot) missing"


INSTITUTIONS_BORDER = (0x05, 0x50, 0xAE)  # the verdict section's left border; nowhere else


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
@pytest.mark.parametrize("kind", BOTH_RUNS)
def test_the_per_institution_tables_are_on_the_first_screen(kind, request, tmp_path):
    """A 1200 x 1200 CSS-pixel screenshot at scale 1: the per-institution section's border
    must show for most of a table's height, so the tables start within the first 1,200 px."""
    audit_dir = request.getfixturevalue(f"{kind}_audit_dir")
    page = (audit_dir / "audit.html").read_text()
    assert page.count("#0550ae") == 1  # the colour marks that section only
    from PIL import Image

    shot = tmp_path / "first-screen.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--force-device-scale-factor=1",
            "--window-size=1200,1200",
            (audit_dir / "audit.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)  # (1200, 1200, 3)
    assert pixels.shape[0] <= 1200
    border = (np.abs(pixels - INSTITUTIONS_BORDER).sum(axis=2) < 12).any(axis=1)  # (rows,)
    assert border.sum() >= 200, f"per-institution section visible on {border.sum()} px rows"

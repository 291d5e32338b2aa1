"""Automated accessibility check: axe-core, run in Debian's chromium, finds no serious or
critical violation on the citizen's form, the procedure page and the catalogue index.

axe-core is an npm package (never downloaded by the tests): `.ci/run` installs it and sets
GUICHET_AXE_JS to its `axe.min.js`; without it (or without chromium) the test is skipped and
says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PROCEDURES

from engine import load_procedure, procedure_files
from renderers.form import form_html
from renderers.page import page_html
from renderers.site import build_site

CHROMIUM = "/usr/bin/chromium"
AXE = os.environ.get("GUICHET_AXE_JS", "")
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}"),
    pytest.mark.skipif(not AXE or not os.path.exists(AXE),
                       reason="set GUICHET_AXE_JS to axe-core's axe.min.js (.ci/run does)"),
]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def violations(browser: Any, html_file: Path, width: int = 360) -> list[str]:
    """The serious and critical violations axe-core finds on a page, one line each."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.goto(html_file.as_uri())
        page.add_script_tag(path=AXE)
        found = page.evaluate("async () => (await axe.run(document)).violations")
    finally:
        page.close()
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            f"{[n['target'] for n in v['nodes']][:3]}" for v in found if v["impact"] in SERIOUS]


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("path", sorted(procedure_files([PROCEDURES])), ids=lambda p: p.stem)
def test_the_form_and_the_page_have_no_serious_violation(browser: Any, path: Path,
                                                         language: str, tmp_path: Path) -> None:
    procedure = load_procedure(path)
    form = tmp_path / "form.html"
    form.write_text(form_html(procedure, language), encoding="utf-8")
    page = tmp_path / "page.html"
    page.write_text(page_html(procedure, language), encoding="utf-8")
    assert violations(browser, form) == []
    assert violations(browser, page) == []


def test_the_catalogue_index_has_no_serious_violation(browser: Any, tmp_path: Path) -> None:
    build_site([load_procedure(p) for p in procedure_files([PROCEDURES])], tmp_path)
    assert violations(browser, tmp_path / "index.html", width=1280) == []


def test_axe_does_find_a_violation_it_is_shown(browser: Any, tmp_path: Path) -> None:
    """The check can fail: an input without a label is reported."""
    broken = tmp_path / "broken.html"
    broken.write_text('<!doctype html><html lang="fr"><head><title>x</title></head><body>'
                      '<main><input type="text"></main></body></html>', encoding="utf-8")
    assert any(line.startswith("label") for line in violations(browser, broken))

"""The catalogue site in a real browser (Debian's chromium, driven by playwright): the search
box filters the index offline, and its links lead to each procedure's page and form."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PROCEDURES

from engine import load_procedure, procedure_files
from renderers.site import build_site

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no {CHROMIUM}: install Debian's chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    build_site([load_procedure(p) for p in procedure_files([PROCEDURES])], root)
    return root


@pytest.fixture(scope="module")
def page(site: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 360, "height": 800})
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        yield context.new_page()
        context.close()
        browser.close()
        assert all(url.startswith("file:") for url in requests), requests


def visible(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("li[data-search]:visible strong").all_inner_texts()]


def test_the_search_box_filters_the_index_without_a_server(page: Any, site: Path) -> None:
    page.goto((site / "fr" / "index.html").as_uri())
    everything = visible(page)
    assert len(everything) == len(list(procedure_files([PROCEDURES])))
    page.fill("#search", "casier")  # "Casier judiciaire", accents and case ignored
    assert len(visible(page)) == 1 and "casier" in visible(page)[0].lower()
    page.fill("#search", "zzz nothing")
    assert visible(page) == [] and page.locator("#none").is_visible()
    page.fill("#search", "")
    assert visible(page) == everything


def test_the_links_lead_to_the_page_and_the_form(page: Any, site: Path) -> None:
    page.goto((site / "en" / "index.html").as_uri())
    page.fill("#search", "passport")
    page.locator("li[data-search]:visible a").first.click()
    assert page.url.endswith("/en/passport/index.html")
    assert page.locator("h1").count() == 1
    page.go_back()
    page.fill("#search", "passport")  # the page is loaded again: filter again
    page.locator("li[data-search]:visible a", has_text="Form").first.click()
    assert page.url.endswith("/en/passport/form.html")
    assert page.locator("form").count() >= 1

"""The passport form in a real browser (Debian's chromium, driven by playwright): conditional
fields follow the birth date, the browser refuses an empty required field, the fee summary
follows a conditional fee, and screenshots at 360 px and 1280 px are kept as artefacts
(under $GUICHET_ARTEFACTS, else the test's temporary directory)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import load_procedure
from renderers.form import form_html

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium (/usr/bin/chromium) is not installed")


@pytest.fixture(scope="module")
def form_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    procedure = load_procedure(ROOT / "procedures" / "passport.yaml")
    path = tmp_path_factory.mktemp("form") / "passport.fr.html"
    path.write_text(form_html(procedure, "fr"), encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, form_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.goto(form_url)
    yield opened
    context.close()
    assert problems == []  # no script error on the page


def _born(years_ago: int) -> str:
    today = dt.date.today()
    return dt.date(today.year - years_ago, 1, 1).isoformat()


MINOR_FIELDS = ["#f-guardian_surname", "#f-guardian_first_names", "#f-guardian_phone",
                "#d-guardian_id_card_copy", "#d-parental_authorisation"]
ADULT_FIELDS = ["#f-nin", "#f-emergency_contact_name", "#d-id_card_copy"]


def test_minor_fields_follow_the_birth_date(page: Any) -> None:
    page.fill("#f-birth_date", _born(10))
    for selector in MINOR_FIELDS:
        assert page.is_visible(selector), selector
        assert page.is_enabled(selector), selector
    for selector in ADULT_FIELDS:
        assert page.is_hidden(selector), selector
        assert page.is_disabled(selector), selector  # not submitted
    assert page.get_attribute("#f-guardian_surname", "required") is not None
    assert page.is_visible("#f-guardian_relationship-0")

    page.fill("#f-birth_date", _born(30))
    for selector in MINOR_FIELDS:
        assert page.is_hidden(selector), selector
        assert page.is_disabled(selector), selector
    for selector in ADULT_FIELDS:
        assert page.is_visible(selector), selector
    assert page.is_hidden("#f-guardian_relationship-0")


def test_the_browser_refuses_an_empty_required_field(page: Any) -> None:
    page.check("#f-passport_type-0")
    page.check("#f-request_type-0")
    assert page.evaluate("document.getElementById('f-surname').validity.valueMissing")
    assert page.evaluate("document.getElementById('guichet-form').checkValidity()") is False
    assert page.locator("#f-surname:invalid").count() == 1
    page.click("button[type=submit]")
    assert page.url.endswith("passport.fr.html")  # not submitted
    assert page.text_content("#f-passport_type-error") == ""
    assert page.text_content("#f-surname-error") != ""  # the message in its slot
    page.fill("#f-surname", "Amegan")
    assert page.locator("#f-surname:invalid").count() == 0


def test_the_fee_summary_follows_a_conditional_fee(page: Any) -> None:
    page.check("#f-passport_type-0")
    assert page.is_visible("#fee-passport_fee")
    assert page.is_hidden("#fee-service_passport_fee")
    assert page.text_content("#fees-total") == "30\u202f000\u00a0FCFA"
    page.check("#f-passport_type-1")
    assert page.is_hidden("#fee-passport_fee")
    assert page.is_visible("#fee-service_passport_fee")
    assert page.is_visible("#f-employing_ministry")


def test_screenshots_at_phone_and_desktop_widths(browser: Any, form_url: str,
                                                 tmp_path: Path) -> None:
    folder = Path(os.environ.get("GUICHET_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for width in (360, 1280):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        page.goto(form_url)
        page.fill("#f-birth_date", _born(10))
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
        target = folder / f"form-passport-{width}.png"
        page.screenshot(path=str(target), full_page=True)
        context.close()
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

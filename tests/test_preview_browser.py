"""`guichet preview` in a real browser (Debian's chromium, driven by playwright): a passport
case played from the form to the issue of the passport, switching role between the steps as
the scenarios of procedures/tests/passport/ do. A screenshot of the last page is saved under
$GUICHET_ARTEFACTS (or the test's temporary directory)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import JPEG, PDF, PROCEDURES, passport_data

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no {CHROMIUM}: install Debian's chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCUMENTS = ("nationality_certificate", "birth_certificate", "id_card_copy",
             "emergency_contact_certificate", "proof_of_profession")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[str]:
    """The preview served by uvicorn in a thread, on a free port of 127.0.0.1."""
    uvicorn = pytest.importorskip("uvicorn")
    from web.preview import create_app

    app = create_app(PROCEDURES)
    port = _free_port()
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the preview did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(timeout=20)
    assert not os.path.exists(app.state.preview.directory)  # the files went with it


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
        assert all(url.startswith(server) for url in requests), requests  # nothing external


def artefacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("GUICHET_ARTEFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def fill_start_form(page: Any, data: dict[str, str]) -> None:
    """Fill the start form by field names (the renderer's form, or the preview's own)."""
    form = page.locator('form[action="/procedures/passport/start"]')
    for name, value in data.items():
        control = form.locator(f'[name="{name}"]').first
        kind = control.evaluate("e => e.tagName.toLowerCase() + ':' + (e.type || '')")
        if kind.startswith("select"):
            control.select_option(value)
        elif kind.endswith(":radio"):
            form.locator(f'[name="{name}"][value="{value}"]').check()
        else:
            control.fill(value)


def _file(name: str, content: bytes, media_type: str) -> dict[str, Any]:
    return {"name": name, "mimeType": media_type, "buffer": content + name.encode()}


FILES = {document: [_file(f"{document}.pdf", PDF, "application/pdf")]
         for document in DOCUMENTS}
FILES["photos"] = [_file(f"photo-{n}.jpg", JPEG, "image/jpeg") for n in (1, 2)]


def attach_in_start_form(page: Any) -> None:
    """The form's own file inputs, where it has them (the renderer's form asks for the
    documents with the data: `documents.ID`)."""
    form = page.locator('form[action="/procedures/passport/start"]')
    for document, files in FILES.items():
        found = form.locator(f'input[type=file][name="documents.{document}"], '
                             f'input[type=file][name="{document}"]')
        if found.count():
            multiple = found.first.get_attribute("multiple") is not None
            found.first.set_input_files(files if multiple else files[:1])


def act_as(page: Any, role: str, actor_id: str) -> None:
    page.select_option("#act-role", role)
    page.fill("#act-id", actor_id)
    page.click(".preview-bar button[type=submit]")
    page.wait_for_load_state()


def fire(page: Any, trigger: str, expected_state: str) -> None:
    page.click(f"#step-{trigger} button[name=fire]")
    page.wait_for_load_state()
    assert page.locator("#state").get_attribute("data-state") == expected_state, \
        page.locator(".messages").all_inner_texts()


def test_a_passport_case_from_the_form_to_the_issue_of_the_passport(
        page: Any, server: str, tmp_path: Path) -> None:
    page.goto(server + "/")
    page.click('a[href="/procedures/passport/form"]')
    data = passport_data(emergency_contact_phone="91 23 45 67")
    fill_start_form(page, data)
    attach_in_start_form(page)
    page.locator('form[action="/procedures/passport/start"] button[type=submit]').last.click()
    page.wait_for_url("**/cases/**")
    assert page.locator("#state").get_attribute("data-state") == "draft"
    assert not page.locator(".messages .error").count(), page.locator(".messages").inner_text()

    # blocked until every document is attached and the fees paid, and it says why
    assert page.locator("#step-submit button[name=fire]").is_disabled()
    assert "reste à payer" in page.locator("#reasons-submit").inner_text()
    for document, files in FILES.items():  # those the start form did not carry
        row = page.locator(f"#document-{document}")
        for file in files:
            if file["name"] in row.inner_text():
                continue
            row.locator("input[type=file]").set_input_files(file)
            row.locator("button[type=submit]").click()
            page.wait_for_load_state()
            row = page.locator(f"#document-{document}")
            assert file["name"] in row.inner_text(), page.locator(".messages").inner_text()
    page.click("#pay button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#fees-outstanding").inner_text() == "0"
    fire(page, "submit", "submitted")

    act_as(page, "agent", "agent-1")
    assert page.locator("#step-refer_to_sgg button[name=fire]").is_disabled()
    assert "Transmettre au SGG" in page.locator("#reasons-refer_to_sgg").inner_text()
    fire(page, "start_review", "under_review")
    appointment = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=14)).isoformat()
    page.fill("#step-schedule_enrolment [name=appointment_date]", appointment)
    fire(page, "schedule_enrolment", "enrolment_scheduled")
    for box in ("originals_checked", "photo_captured", "fingerprints_captured",
                "signature_captured"):
        page.check(f"#step-record_enrolment [name={box}]")
    fire(page, "record_enrolment", "enrolled")

    act_as(page, "supervisor", "agent-1")  # separation of duties: blocked, and why
    assert page.locator("#step-approve button[name=fire]").is_disabled()
    assert page.locator("#reasons-approve li").count() >= 1
    act_as(page, "supervisor", "supervisor-1")
    fire(page, "approve", "in_production")

    act_as(page, "agent", "agent-2")
    fire(page, "mark_ready", "ready_for_collection")
    page.fill("#step-hand_over [name=passport_number]", "TG1234567")
    page.check("#step-hand_over [name=holder_verified]")
    fire(page, "hand_over", "issued")
    assert page.locator("#outcome").inner_text() == "accepted"
    assert "TG1234567" in page.locator("#history").inner_text()
    page.screenshot(path=str(artefacts(tmp_path) / "preview-passport-issued.png"),
                    full_page=True)

"""`guichet preview` (web/preview.py) through HTTP with FastAPI's TestClient: the index, a
passport case from the form to the agent's first step, refusals shown in the citizen's words,
CSRF, unknown cases."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")  # python-multipart: FastAPI's form parsing

from fastapi.testclient import TestClient  # noqa: E402
from helpers import APPLICANT, PROCEDURES, fake_clock, jpeg, passport_data, pdf  # noqa: E402

from engine import Blocked, Engine, load_procedure, procedure_files  # noqa: E402
from web.preview import CSRF_COOKIE, create_app  # noqa: E402

PASSPORT_DOCUMENTS = ("nationality_certificate", "birth_certificate", "id_card_copy",
                      "emergency_contact_certificate", "proof_of_profession")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(PROCEDURES, clock=fake_clock())) as test_client:
        test_client.get("/")  # the CSRF cookie
        yield test_client


def text_of(response: Any) -> str:
    """The page's text, tags removed and entities decoded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)))


def post(client: TestClient, url: str, data: dict[str, Any] | None = None,
         **options: Any) -> Any:
    return client.post(url, data={**(data or {}), "csrf": client.cookies[CSRF_COOKIE]},
                       **options)


def act_as(client: TestClient, role: str, actor_id: str, lang: str = "fr") -> None:
    response = post(client, "/actor", {"role": role, "id": actor_id, "lang": lang, "next": "/"},
                    follow_redirects=False)
    assert response.status_code == 303


def start_passport(client: TestClient, **overrides: Any) -> str:
    response = post(client, "/procedures/passport/start", passport_data(**overrides),
                    follow_redirects=False)
    assert response.status_code == 303, text_of(response)
    match = re.match(r"/cases/([A-Z0-9-]+)", response.headers["location"])
    assert match is not None
    return match.group(1)


def state_of(client: TestClient, reference: str) -> str:
    page = client.get(f"/cases/{reference}")
    assert page.status_code == 200
    match = re.search(r'data-state="([a-z_]+)"', page.text)
    assert match is not None
    return match.group(1)


def step_button(page_html: str, trigger: str) -> str:
    """The <button> of a trigger's step form on a case page."""
    match = re.search(rf'<button type="submit" name="fire" value="{trigger}"[^>]*>', page_html)
    assert match is not None, trigger
    return match.group(0)


def attach(client: TestClient, reference: str, document: str, name: str, content: bytes,
           media_type: str = "application/pdf") -> Any:
    return post(client, f"/cases/{reference}/attach", {"document": document},
                files={"file": (name, content, media_type)}, follow_redirects=False)


# --- the index ----------------------------------------------------------------------------------

def test_the_index_lists_the_shipped_procedures(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    shipped = [load_procedure(p) for p in procedure_files([PROCEDURES])]
    assert len(shipped) >= 4
    for procedure in shipped:
        assert procedure.title.get("fr") in text_of(page)
        for link in ("", "/form", "/diagram"):
            assert f'href="/procedures/{procedure.id}{link}"' in page.text
    english = client.get("/?lang=en")
    assert shipped[0].title.get("en") in text_of(english)
    assert client.cookies.get("guichet_lang") == "en"  # the choice is kept


def test_each_procedure_page_form_and_diagram_answers(client: TestClient) -> None:
    for procedure in (load_procedure(p) for p in procedure_files([PROCEDURES])):
        for link in ("", "/form", "/diagram"):
            page = client.get(f"/procedures/{procedure.id}{link}")
            assert page.status_code == 200, (procedure.id, link)
            assert "<html" in page.text
        form = client.get(f"/procedures/{procedure.id}/form")
        assert f'action="/procedures/{procedure.id}/start"' in form.text
        token = client.cookies[CSRF_COOKIE]
        assert f'name="csrf" value="{token}"' in form.text  # the form posts its token


# --- a passport case, from the form to the agent's first step ------------------------------------

def test_a_passport_case_from_the_form_to_the_first_agent_step(client: TestClient) -> None:
    reference = start_passport(client)  # as the default actor: an applicant
    page = client.get(f"/cases/{reference}")
    words = text_of(page)
    assert reference in words and "Brouillon" in words
    assert "Amegah" in words and "+22890123456" in words  # the data, as the engine keeps it
    assert "30000" in words  # fees due
    assert "disabled" in step_button(page.text, "submit")  # documents and payment missing
    assert "reste à payer" in words and "pièce manquante" in words

    for document in PASSPORT_DOCUMENTS:
        assert attach(client, reference, document, f"{document}.pdf",
                      pdf(document)).status_code == 303
    for number in ("1", "2"):
        assert attach(client, reference, "photos", f"photo-{number}.jpg", jpeg(number),
                      "image/jpeg").status_code == 303
    page = client.get(f"/cases/{reference}")
    assert "photo-2.jpg" in page.text and "image/jpeg" in page.text  # sniffed by the engine
    assert "pièce manquante" not in text_of(page)

    paid = post(client, f"/cases/{reference}/pay", {"amount": "30000",
                                                     "payment_reference": "abc"})
    assert paid.status_code == 200  # after the redirect
    assert re.search(r'id="fees-outstanding">0<', paid.text)
    assert "disabled" not in step_button(paid.text, "submit")

    submitted = post(client, f"/cases/{reference}/fire", {"trigger": "submit"})
    assert submitted.status_code == 200
    assert state_of(client, reference) == "submitted"
    assert "Accusé de réception" in text_of(submitted)  # the document the step issued

    act_as(client, "agent", "agent-1")
    page = client.get(f"/cases/{reference}")
    words = text_of(page)
    assert "disabled" not in step_button(page.text, "start_review")
    assert "disabled" in step_button(page.text, "refer_to_sgg")
    assert "les conditions de « Transmettre au SGG » ne sont pas remplies" in words
    assert "passport_type ==" not in words  # never the guard's expression
    assert "réservé aux rôles : applicant" in words  # withdraw: the applicant's

    reviewed = post(client, f"/cases/{reference}/fire", {"trigger": "start_review"})
    assert reviewed.status_code == 200
    assert state_of(client, reference) == "under_review"
    history = text_of(client.get(f"/cases/{reference}"))
    assert "agent-1 (agent)" in history and "citizen-1 (applicant)" in history


def test_blocked_reasons_follow_the_chosen_language(client: TestClient) -> None:
    reference = start_passport(client)
    page = client.get(f"/cases/{reference}?lang=en")
    words = text_of(page)
    assert "Draft" in words and "missing document" in words.lower()
    assert "outstanding" in words.lower()


def test_a_step_input_is_asked_and_checked(client: TestClient) -> None:
    reference = played_to_under_review(client)
    act_as(client, "supervisor", "supervisor-1")
    page = client.get(f"/cases/{reference}")
    assert 'name="reason"' in page.text  # reject asks for its reason
    refused = post(client, f"/cases/{reference}/fire", {"trigger": "reject", "reason": "short"})
    assert refused.status_code == 422
    words = text_of(refused)
    assert "Motif du rejet" in words  # the field, by its label
    assert 'value="short"' in refused.text or ">short<" in refused.text  # kept
    assert state_of(client, reference) == "under_review"
    done = post(client, f"/cases/{reference}/fire",
                {"trigger": "reject", "reason": "Pièces non conformes au dossier"})
    assert done.status_code == 200
    assert state_of(client, reference) == "rejected"


def played_to_under_review(client: TestClient) -> str:
    reference = start_passport(client)
    for document in PASSPORT_DOCUMENTS:
        attach(client, reference, document, f"{document}.pdf", pdf(document))
    for number in ("1", "2"):
        attach(client, reference, "photos", f"p{number}.jpg", jpeg(number), "image/jpeg")
    post(client, f"/cases/{reference}/pay", {"amount": "30000"})
    post(client, f"/cases/{reference}/fire", {"trigger": "submit"})
    act_as(client, "agent", "agent-1")
    post(client, f"/cases/{reference}/fire", {"trigger": "start_review"})
    assert state_of(client, reference) == "under_review"
    return reference


# --- refusals -----------------------------------------------------------------------------------

def test_a_refusal_shows_its_message(client: TestClient) -> None:
    reference = start_passport(client)
    refused = post(client, f"/cases/{reference}/fire", {"trigger": "submit"})
    assert refused.status_code == 409
    # the very message the engine gives a citizen, on the page (no traceback)
    engine = Engine(PROCEDURES, "sqlite://", clock=fake_clock())
    try:
        case = engine.start("passport", APPLICANT, passport_data())
        with pytest.raises(Blocked) as blocked:
            engine.fire(case.reference, "submit", APPLICANT)
    finally:
        engine.close()
    expected = blocked.value.message("fr").replace(case.reference, reference)
    assert expected in text_of(refused)
    assert "Traceback" not in refused.text
    assert state_of(client, reference) == "draft"


def test_invalid_start_data_shows_each_field_message_and_keeps_the_answers(
        client: TestClient) -> None:
    refused = post(client, "/procedures/passport/start",
                   passport_data(nin="12", surname="Mensah"))
    assert refused.status_code == 422
    words = text_of(refused)
    assert "Numéro d'identification national (NIN)" in words  # by label, not id
    assert 'value="Mensah"' in refused.text  # what was typed is kept
    assert 'aria-invalid="true"' in refused.text
    assert "Aucun dossier" in text_of(client.get("/"))  # nothing was opened


def test_an_actor_who_may_not_start_is_told_why(client: TestClient) -> None:
    act_as(client, "agent", "agent-1")
    refused = post(client, "/procedures/passport/start", passport_data())
    assert refused.status_code == 403
    assert "Traceback" not in refused.text and 'role="alert"' in refused.text


def test_a_post_without_the_csrf_token_is_refused(client: TestClient) -> None:
    missing = client.post("/procedures/passport/start", data=passport_data())
    assert missing.status_code == 403
    assert "rechargez la page" in text_of(missing)
    forged = client.post("/procedures/passport/start",
                         data={**passport_data(), "csrf": "forged.0000"})
    assert forged.status_code == 403
    assert "Aucun dossier" in text_of(client.get("/"))
    reference = start_passport(client)
    client.cookies.delete(CSRF_COOKIE)  # a token without its cookie (another site's page)
    stolen = client.post(f"/cases/{reference}/fire", data={"trigger": "withdraw",
                                                           "csrf": "x.y"})
    assert stolen.status_code == 403
    assert state_of(client, reference) == "draft"
    switched = client.post("/actor", data={"role": "agent", "id": "agent-1"},
                           follow_redirects=False)
    assert switched.status_code == 403


def test_an_unknown_reference_gives_a_404_page(client: TestClient) -> None:
    page = client.get("/cases/PAS-2026-999999-X")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in page.text and "Traceback" not in page.text
    reference = start_passport(client)
    wrong_check = reference[:-1] + ("A" if reference[-1] != "A" else "B")
    assert client.get(f"/cases/{wrong_check}").status_code == 404
    assert client.get("/procedures/no_such_thing").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert post(client, "/cases/PAS-2026-999999-X/fire", {"trigger": "submit"}
                ).status_code == 404


def test_the_actor_is_kept_and_redirects_stay_on_the_site(client: TestClient) -> None:
    response = post(client, "/actor", {"role": "agent", "id": "agent-7",
                                       "next": "https://elsewhere.example/"},
                    follow_redirects=False)
    assert response.headers["location"] == "/"
    assert 'value="agent-7"' in client.get("/").text
    bad = post(client, "/actor", {"role": "agent", "id": ""}, follow_redirects=True)
    assert 'role="alert"' in bad.text  # an empty id is refused, in words


def test_the_blobs_directory_is_removed_when_the_app_stops() -> None:
    app = create_app(PROCEDURES, clock=fake_clock())
    directory = app.state.preview.directory
    with TestClient(app) as test_client:
        test_client.get("/")
        assert os.path.isdir(directory)
    assert not os.path.exists(directory)


# --- the command ---------------------------------------------------------------------------------

def test_the_command_binds_to_this_machine_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import web.preview
    from cli import main

    served: list[tuple[str, int]] = []

    def fake_run(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
        served.append((host, port))
        app.state.preview.close()

    monkeypatch.setattr(web.preview, "run", fake_run)
    runner = CliRunner()
    refused = runner.invoke(main, ["preview", str(PROCEDURES), "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "--public" in refused.output
    assert served == []
    local = runner.invoke(main, ["preview", str(PROCEDURES), "--port", "8123"])
    assert local.exit_code == 0, local.output
    assert served == [("127.0.0.1", 8123)]
    public = runner.invoke(main, ["preview", str(PROCEDURES), "--host", "0.0.0.0", "--public"])
    assert public.exit_code == 0, public.output
    assert "warning" in public.output and served[-1] == ("0.0.0.0", 8000)

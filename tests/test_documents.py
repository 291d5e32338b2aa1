"""Issued documents and receipts (renderers/documents.py), their signatures and verification
codes (renderers/signing.py), `guichet render document`, `guichet verify`, `guichet keys
generate`, and the `sms-length` rule's counting (engine/sms.py).

A case is played on a real Engine (SQLite) to the step that issues a document; the page is
rendered from the text the history kept. Golden pages (unsigned) live in
tests/golden/renderers/documents/; refresh with GUICHET_REGEN=1 and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import (
    APPLICANT,
    CLERK,
    MAGISTRATE,
    PROCEDURES,
    MakeEngine,
    assert_golden,
    criminal_record_collected,
    submitted,
)

from cli import main
from engine import Actor, Engine, compile_source
from engine.model import Procedure
from engine.sms import sms_length
from engine.values import SYSTEM
from renderers.documents import (
    DocumentNotIssued,
    document_html,
    find_issued,
    read_page,
    receipt_html,
    receipt_text,
)
from renderers.qr import qr_svg
from renderers.signing import Signer, verify

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "renderers" / "documents"

CITIZEN = Actor("citizen-1", ["citizen"])
AGENT = Actor("agent-1", ["agent"])
AUDITOR = Actor("auditor-1", ["auditor"])

#: A small procedure issuing an attestation that prints an author's text and a sensitive
#: field (the address), which an auditor (`read:`) may not see.
ATTEST = textwrap.dedent("""\
    id: attest
    version: "1"
    reference_prefix: ATR
    title: {fr: Attestation de résidence, en: Residence attestation}
    authority:
      ministry: {fr: Ministère de l'Administration territoriale,
                 en: Ministry of Territorial Administration}
      directorate: {fr: Mairie de Lomé, en: Lomé town hall}
    start: {roles: [citizen]}
    read: [auditor]
    parties:
      applicant: {name: surname}
    roles:
      citizen: {label: {fr: Usager, en: Citizen}}
      agent: {label: {fr: Agent, en: Agent}}
      auditor: {label: {fr: Auditeur, en: Auditor}}
    fields:
      - {id: surname, type: string, required: true, label: {fr: Nom, en: Surname}}
      - {id: address, type: text, required: true, sensitive: true,
         label: {fr: Adresse, en: Address}}
    documents:
      - {id: proof, label: {fr: Justificatif de domicile, en: Proof of address}}
    fees:
      - {id: stamp, label: {fr: Timbre, en: Stamp}, amount: 1500, due: submit}
    states:
      draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
      submitted: {label: {fr: Déposée, en: Submitted}}
      granted: {label: {fr: Délivrée, en: Granted}, final: accepted}
    transitions:
      - {trigger: submit, from: draft, to: submitted, roles: [citizen],
         requires: {fields: all, documents: all}}
      - trigger: grant
        from: submitted
        to: granted
        roles: [agent]
        issue:
          - id: attestation
            title: {fr: Attestation de résidence, en: Certificate of residence}
            template:
              fr: |
                Le maire atteste que {{ surname }} demeure à :
                {{ address }}
                Référence {{ reference }}.
              en: |
                The mayor certifies that {{ surname }} lives at:
                {{ address }}
                Reference {{ reference }}.
    """)
#: Author text that must come out as text, never as markup.
SURNAME = "Dupont <script>alert('x')</script> & fils"
ADDRESS = "Rue 12 <b>Bè</b>\nQuartier Tokoin"


def attest_procedure() -> Procedure:
    procedure, diagnostics = compile_source(ATTEST, "attest.yaml")
    assert procedure is not None, diagnostics
    return procedure


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A procedures directory holding the attest procedure (for the CLI)."""
    folder = tmp_path / "procedures"
    folder.mkdir()
    (folder / "attest.yaml").write_text(ATTEST, encoding="utf-8")
    return folder


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'guichet.db'}"


def granted(engine: Engine) -> str:
    """An attest case played to the grant that issues its attestation; its reference."""
    case = engine.start("attest", CITIZEN, {"surname": SURNAME, "address": ADDRESS})
    engine.attach(case.reference, "proof", "facture.pdf", b"%PDF-1.4\n% proof\n", CITIZEN)
    engine.pay(case.reference, 1500, "tmoney", "TM-1", CITIZEN)
    engine.fire(case.reference, "submit", CITIZEN)
    return engine.fire(case.reference, "grant", AGENT).reference


@pytest.fixture
def played(make_engine: MakeEngine, url: str) -> tuple[Engine, str]:
    engine = make_engine(url, [attest_procedure()])
    return engine, granted(engine)


class Checked(HTMLParser):
    """Parses a page strictly enough: every element closed in order, ids unique."""

    VOID = {"meta", "br", "img", "hr", "input", "link", "wbr", "source"}
    SVG_VOID = {"path", "rect"}

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()
        assert self.stack == [], f"unclosed: {self.stack}"
        assert len(self.ids) == len(set(self.ids)), f"duplicate ids: {self.ids}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.ids += [value or "" for name, value in attrs if name == "id"]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_golden(name: str, page: str) -> None:
    assert_golden(GOLDEN / name, page)


# --- the page of an issued document -------------------------------------------------------------

def test_issued_document_page(played: tuple[Engine, str]) -> None:
    engine, reference = played
    case = engine.case(reference, SYSTEM)
    procedure = engine.workflow(case.procedure_hash).procedure
    history = engine.history(reference, SYSTEM)
    page = document_html(procedure, case, "attestation", "fr", history=history)
    parsed = Checked(page)
    assert '<html lang="fr">' in page
    assert "@page { size: A4;" in page
    assert reference in page
    assert "Ministère de l&#39;Administration territoriale" in page and "Mairie de Lomé" in page
    assert "Attestation de résidence" in page and "2 mars 2026" in page
    # the author's text is text: escaped, its line breaks kept, no element made of it
    assert "<script>" not in page and "<b>" not in page
    assert "Dupont &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; fils" in page
    assert "script" not in parsed.tags and "b" not in parsed.tags
    text, code = read_page(page)
    assert text == (f"Le maire atteste que {SURNAME} demeure à :\n{ADDRESS}\n"
                    f"Référence {reference}.")
    assert code is None and "verification-code" not in page and "<svg" not in page
    check_golden("attestation.fr.html", page)


def test_english_page_and_text_from_the_history(played: tuple[Engine, str]) -> None:
    engine, reference = played
    case = engine.case(reference, SYSTEM)
    procedure = engine.workflow(case.procedure_hash).procedure
    history = engine.history(reference, SYSTEM)
    page = document_html(procedure, case, "attestation", "en", history=history)
    assert '<html lang="en">' in page and "Certificate of residence" in page
    assert "The mayor certifies that" in page and "2 March 2026" in page
    issued = find_issued(history, "attestation", "en")
    assert issued.sequence == history[-1].sequence and issued.at == history[-1].at
    with pytest.raises(DocumentNotIssued):
        document_html(procedure, case, "certificate", "fr", history=history)


def test_the_renderer_prints_the_text_it_is_given(played: tuple[Engine, str]) -> None:
    engine, reference = played
    case = engine.case(reference, SYSTEM)
    procedure = engine.workflow(case.procedure_hash).procedure
    page = document_html(procedure, case, "attestation", issued_text="{{ surname }} <i>x</i>")
    assert read_page(page)[0] == "{{ surname }} <i>x</i>"  # never rendered as a template
    assert "&lt;i&gt;x&lt;/i&gt;" in page


def test_shipped_procedure_bulletin(make_engine: MakeEngine, url: str) -> None:
    engine = make_engine(url)
    case = criminal_record_collected(engine)
    procedure = engine.workflow(case.procedure_hash).procedure
    history = engine.history(case.reference, SYSTEM)
    page = document_html(procedure, case, "bulletin_n3", history=history)
    Checked(page)
    text = read_page(page)[0]
    assert text is not None and text.startswith("Bulletin n°3 du casier judiciaire")
    assert "de Adjovi Komlan et de Afi Dossou" in text and "Ministère de la Justice" in page


# --- signatures ---------------------------------------------------------------------------------

def test_signed_page_verifies(played: tuple[Engine, str]) -> None:
    engine, reference = played
    case = engine.case(reference, SYSTEM)
    procedure = engine.workflow(case.procedure_hash).procedure
    signer = Signer.generate()
    page = document_html(procedure, case, "attestation", signer=signer,
                         history=engine.history(reference, SYSTEM))
    Checked(page)
    text, code = read_page(page)
    assert text is not None and code is not None
    assert re.fullmatch(rf"GV1\.{reference}\.attestation\.([A-Z2-7]{{4}}-){{27}}[A-Z2-7]{{4}}",
                        code)
    assert f'<code id="verification-code">{code}</code>' in page and '<svg' in page
    assert verify(code, text, signer.public_pem()).ok
    # what a person types: lower case, spaces, 0/1/8 for O/I/B
    head, _, last = code.rpartition(".")
    last = last.lower().replace("-", " ").replace("o", "0").replace("i", "1").replace("b", "8")
    typed = f"gv1.{reference.lower()}.attestation.\n{last}"
    assert verify(typed, text, signer.public_pem()).ok
    # line ends and trailing white space do not change the content
    assert verify(code, text.replace("\n", "\r\n") + "  \n", signer.public_pem()).ok


def _forged(code: str) -> str:
    """The code with its signature's first character changed and its check recomputed, as
    someone who knows the format but not the key would write it."""
    import base64
    import hashlib

    head, _, encoded = code.rpartition(".")
    payload = bytearray(base64.b32decode(encoded.replace("-", "")))
    payload[5] ^= 0x01
    body = bytes(payload[:-2])
    check = hashlib.sha256(head.encode() + body).digest()[:2]
    return f"{head}.{base64.b32encode(body + check).decode()}"


@pytest.mark.parametrize(("make", "reason"), [
    (lambda code, text, key: (code, text + "Et aussi la maison voisine.", key), "changed"),
    (lambda code, text, key: (_forged(code), text, key), "signature"),
    (lambda code, text, key: (code, text, Signer.generate().public_pem()), "signature"),
    (lambda code, text, key: (code[:-1] + ("A" if code[-1] != "A" else "B"), text, key),
     "mistyped"),
    (lambda code, text, key: (code[:-8], text, key), "mistyped"),
    (lambda code, text, key: ("bonjour", text, key), "format"),
    (lambda code, text, key: ("GV1." + "A" * 600, text, key), "format"),
    (lambda code, text, key: (code, text, b"-----BEGIN PUBLIC KEY-----\nxx\n"), "key"),
    (lambda code, text, key: (None, None, None), "format"),
])
def test_what_verify_refuses(make: object, reason: str) -> None:
    signer = Signer.generate()
    text = "Le maire atteste que Dupont demeure à Lomé.\n"
    code = signer.sign("ATR-2026-000001-T", "attestation", text)
    verdict = verify(*make(code, text, signer.public_pem()))  # type: ignore[operator]
    assert not verdict.ok and verdict.reason == reason, verdict
    assert "\n" not in verdict.message


def test_private_key_round_trip(tmp_path: Path) -> None:
    signer = Signer.generate()
    (tmp_path / "k.pem").write_bytes(signer.private_pem())
    again = Signer.from_pem(tmp_path / "k.pem")
    assert again.public_pem() == signer.public_pem()
    assert again.sign("ATR-2026-000001-T", "a", "x") == signer.sign("ATR-2026-000001-T", "a", "x")


def test_qr_code_is_inline_svg() -> None:
    svg = qr_svg("GV1.ATR-2026-000001-T.a.AAAA", title="<QR>")
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "&lt;QR&gt;" in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


# --- the receipt --------------------------------------------------------------------------------

def test_receipt(played: tuple[Engine, str]) -> None:
    engine, reference = played
    case = engine.case(reference, CITIZEN)
    procedure = engine.workflow(case.procedure_hash).procedure
    page = receipt_html(procedure, case, "fr")
    Checked(page)
    text = read_page(page)[0]
    assert text == receipt_text(procedure, case, "fr")
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == f"Référence : {reference}"
    assert f"Demandeur : {SURNAME} (citizen-1)" in lines
    assert "Frais dus : 1\u202f500\u00a0FCFA" in lines
    assert "Frais payés : 1\u202f500\u00a0FCFA" in lines
    assert "- Justificatif de domicile : facture.pdf (17 octets)" in lines
    assert "Récépissé de dépôt" in page and "&lt;script&gt;" in page
    check_golden("receipt.fr.html", page)
    english = read_page(receipt_html(procedure, case, "en"))[0]
    assert english is not None and "Fees due: XOF\u00a01,500" in english.splitlines()
    signer = Signer.generate()
    signed = receipt_html(procedure, case, signer=signer)
    text, code = read_page(signed)
    assert code is not None and code.startswith(f"GV1.{reference}.receipt.")
    assert text is not None and verify(code, text, signer.public_pem()).ok


def test_receipt_says_what_is_still_due(make_engine: MakeEngine, url: str) -> None:
    engine = make_engine(url, [attest_procedure()])
    case = engine.start("attest", CITIZEN, {"surname": "Dupont", "address": "Lomé"},
                        on_behalf=False)
    procedure = engine.workflow(case.procedure_hash).procedure
    text = receipt_text(procedure, engine.case(case.reference, CITIZEN), "en")
    assert "Still to pay: XOF\u00a01,500" in text.splitlines()
    assert "Documents attached: none" in text.splitlines()


# --- guichet render document / verify / keys ----------------------------------------------------

def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_one_line_refusal(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "issuer.pem", tmp_path / "issuer.pub.pem"
    result = run("keys", "generate", "--private", str(private), "--public", str(public))
    assert result.exit_code == 0, result.output
    return private, public


def test_keys_generate(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = private.read_bytes()
    again = run("keys", "generate", "--private", str(private), "--public", str(public))
    assert "not overwritten" in assert_one_line_refusal(again)
    assert private.read_bytes() == before


def render(url: str, directory: Path, *args: str) -> Result:
    return run("render", "document", *args, "--db", url, "--procedures", str(directory))


def test_cli_signs_and_verify_passes(played: tuple[Engine, str], url: str, directory: Path,
                                     tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, reference = played
    private, public = keys
    out = tmp_path / "attestation.html"
    result = render(url, directory, reference, "attestation", "--as", "citizen:citizen-1",
                    "--key", str(private), "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    text, code = read_page(page)
    assert code is not None and text is not None and "Quartier Tokoin" in text
    verified = run("verify", "--file", str(out), "--public-key", str(public))
    assert verified.exit_code == 0, verified.output
    assert verified.output == f"authentic and unchanged: attestation of {reference}\n"
    # the code typed by hand, with the text saved as a .txt file
    (tmp_path / "attestation.txt").write_text(text, encoding="utf-8")
    typed = run("verify", code, "--file", str(tmp_path / "attestation.txt"),
                "--public-key", str(public))
    assert typed.exit_code == 0, typed.output
    # the same page through the `PROCEDURE DOCUMENT --case REFERENCE` form
    other = render(url, directory, "attest", "attestation", "--case", reference, "--as-system")
    assert other.exit_code == 0 and read_page(other.output)[0] == text


def test_cli_verify_refuses_edited_forged_and_foreign(
        played: tuple[Engine, str], url: str, directory: Path, tmp_path: Path,
        keys: tuple[Path, Path]) -> None:
    _, reference = played
    private, public = keys
    out = tmp_path / "attestation.html"
    assert render(url, directory, reference, "attestation", "--as-system", "--key",
                  str(private), "-o", str(out)).exit_code == 0
    page = out.read_text(encoding="utf-8")
    _, code = read_page(page)
    assert code is not None
    edited = tmp_path / "edited.html"
    edited.write_text(page.replace("Quartier Tokoin", "Quartier Bè"), encoding="utf-8")
    result = run("verify", "--file", str(edited), "--public-key", str(public))
    assert "it was changed" in assert_one_line_refusal(result)
    forged = run("verify", _forged(code), "--file", str(out), "--public-key", str(public))
    assert "forged, or signed with another key" in assert_one_line_refusal(forged)
    other = tmp_path / "other.pub.pem"
    other.write_bytes(Signer.generate().public_pem())
    foreign = run("verify", "--file", str(out), "--public-key", str(other))
    assert "signed with another key" in assert_one_line_refusal(foreign)
    mistyped = run("verify", code[:-2] + "AA" if not code.endswith("AA") else code[:-2] + "BB",
                   "--file", str(out), "--public-key", str(public))
    assert "mistyped" in assert_one_line_refusal(mistyped)


@pytest.mark.parametrize("garbage", ["code", "file", "key", "binary", "page", "huge"])
def test_cli_verify_on_garbage_says_why(garbage: str, tmp_path: Path,
                                        keys: tuple[Path, Path]) -> None:
    _, public = keys
    text = tmp_path / "doc.txt"
    text.write_text("Le maire atteste.\n", encoding="utf-8")
    code, file, key = "GV1.ATR-2026-000001-T.attestation." + "A" * 112, str(text), str(public)
    if garbage == "code":
        code = "\x00\x1b[2J not a code ☃"
    elif garbage == "file":
        file = str(tmp_path / "missing.html")
    elif garbage == "key":
        (tmp_path / "bad.pem").write_bytes(os.urandom(300))
        key = str(tmp_path / "bad.pem")
    elif garbage == "binary":
        (tmp_path / "doc.bin").write_bytes(b"\xff\xfe\x00garbage")
        file = str(tmp_path / "doc.bin")
    elif garbage == "page":
        (tmp_path / "doc.html").write_text("<html><p>no document here", encoding="utf-8")
        file = str(tmp_path / "doc.html")
    elif garbage == "huge":
        code = "GV1." + "x" * 100_000
    line = assert_one_line_refusal(run("verify", code, "--file", file, "--public-key", key))
    assert line.startswith("error: ") and "\x1b" not in line
    expected = {"code": "not a verification code", "file": "cannot read",
                "key": "not a PEM public key", "binary": "not UTF-8",
                "page": "not a document page", "huge": "not a verification code"}[garbage]
    assert expected in line


def test_cli_verify_needs_the_document(keys: tuple[Path, Path]) -> None:
    result = run("verify", "GV1.A.b.C", "--public-key", str(keys[1]))
    assert result.exit_code == 2 and "--file" in result.output


def test_cli_reader_who_may_not_see_the_text_is_refused(
        played: tuple[Engine, str], url: str, directory: Path) -> None:
    _, reference = played
    result = render(url, directory, reference, "attestation", "--as", "auditor:auditor-1")
    line = assert_one_line_refusal(result)
    assert line == f"error: auditor-1 may not read the text of attestation of {reference}"
    stranger = render(url, directory, reference, "attestation", "--as", "citizen:citizen-9")
    assert_one_line_refusal(stranger)
    nobody = render(url, directory, reference, "attestation")
    assert nobody.exit_code == 2  # say who reads


def test_cli_unknown_document_and_wrong_procedure(played: tuple[Engine, str], url: str,
                                                  directory: Path) -> None:
    _, reference = played
    unknown = render(url, directory, reference, "passport", "--as-system")
    assert assert_one_line_refusal(unknown) == (
        f'error: no document "passport" was issued on {reference} '
        "(there is: attestation, receipt)")
    wrong = render(url, directory, "passport", "attestation", "--case", reference,
                   "--as-system")
    assert "is a case of attest, not of passport" in assert_one_line_refusal(wrong)


def test_cli_receipt(played: tuple[Engine, str], url: str, directory: Path) -> None:
    _, reference = played
    result = render(url, directory, reference, "receipt", "--as", "citizen:citizen-1",
                    "--lang", "en")
    assert result.exit_code == 0, result.output
    text = read_page(result.output)[0]
    assert text is not None and f"Reference: {reference}" in text.splitlines()
    assert "- Proof of address: facture.pdf (17 bytes)" in text.splitlines()


def test_cli_preview_with_sample_data(directory: Path, tmp_path: Path) -> None:
    data = tmp_path / "sample.yaml"
    data.write_text("surname: 'Koffi <i>'\naddress: Bè\n", encoding="utf-8")
    result = run("render", "document", "attest", "attestation", "--data", str(data),
                 "--procedures", str(directory))
    assert result.exit_code == 0, result.output
    Checked(result.output)
    text = read_page(result.output)[0]
    assert text is not None and text.startswith("Le maire atteste que Koffi <i> demeure à :\nBè\n")
    assert re.search(r"Référence ATR-\d{4}-\d{6}-[0-9A-Z]\.", text)
    inline = run("render", "document", "attest", "attestation", "--data", '{"surname": "K"}',
                 "--procedures", str(directory), "--lang", "en")
    assert inline.exit_code == 0 and "The mayor certifies that K lives at:\nNone" in \
        (read_page(inline.output)[0] or "")
    signed = run("render", "document", "attest", "attestation", "--data", str(data),
                 "--procedures", str(directory), "--key", "k.pem")
    assert signed.exit_code == 2 and "never signed" in signed.output
    missing = run("render", "document", "attest", "nothing", "--data", str(data),
                  "--procedures", str(directory))
    assert "issues no document" in assert_one_line_refusal(missing)


def test_cli_preview_of_a_template_that_fails(tmp_path: Path) -> None:
    folder = tmp_path / "procedures"
    folder.mkdir()
    broken = ATTEST.replace("Référence {{ reference }}.", "{{ 1 / 0 }}")
    (folder / "attest.yaml").write_text(broken, encoding="utf-8")
    result = run("render", "document", "attest", "attestation", "--data", "{}",
                 "--procedures", str(folder))
    assert_one_line_refusal(result)


needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="Chromium is not installed")


@needs_chromium
def test_cli_pdf(played: tuple[Engine, str], url: str, directory: Path, tmp_path: Path,
                 keys: tuple[Path, Path]) -> None:
    _, reference = played
    out = tmp_path / "attestation.pdf"
    result = render(url, directory, reference, "attestation", "--as-system", "--key",
                    str(keys[0]), "--pdf", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
    assert render(url, directory, reference, "attestation", "--as-system",
                  "--pdf").exit_code == 2


def test_shipped_bulletin_through_the_cli(make_engine: MakeEngine, url: str,
                                          tmp_path: Path, keys: tuple[Path, Path]) -> None:
    engine = make_engine(url)
    case = submitted(engine, "criminal_record", APPLICANT)
    engine.fire(case.reference, "start_verification", CLERK)
    engine.fire(case.reference, "verify", CLERK)
    engine.fire(case.reference, "sign", MAGISTRATE)
    out = tmp_path / "bulletin.html"
    result = run("render", "document", case.reference, "bulletin_n3", "--as",
                 "applicant:citizen-1", "--db", url, "--procedures", str(PROCEDURES),
                 "--key", str(keys[0]), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert run("verify", "--file", str(out), "--public-key", str(keys[1])).exit_code == 0


# --- SMS length ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "length", "limit"), [
    ("a" * 160, 160, 160),
    ("Votre demande a été déposée à Lomé.", 35, 160),
    ("Prix : 10 € [TTC]", 20, 160),  # €, [ and ] take two each
    ("Reçu", 4, 70),  # ç is not GSM-7 (Ç is)
    ("Votre passeport est prêt 🎉", 27, 70),  # an emoji is two UTF-16 units
])
def test_sms_length(text: str, length: int, limit: int) -> None:
    counted = sms_length(text)
    assert (counted.length, counted.limit) == (length, limit)
    assert counted.encoding == ("GSM-7" if limit == 160 else "UCS-2")


"""Issued documents and receipts as print-ready HTML (A4), signed when a key is given.

An issued document's text is the one rendered at the step that issued it, kept in the case's
history (`HistoryEntry.issued`): this module receives that text and never renders an author's
template again. It prints it as plain text (escaped, line breaks kept) under a header naming
the authority, the procedure, the reference and the date; with a `Signer`, the document also
carries its verification code and a QR code holding it (renderers/signing.py says what is
signed). The receipt is built from the Case value: reference, date, applicant, fees due and
paid, documents attached.

The signed text is the content of the element `#issued-text`, so `issued_text_of(html)` reads
it back from a saved page for `guichet verify --file`. Renderers never read the database: the
caller reads the case and its history (through the Engine, as a reader) and passes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from markupsafe import Markup

from engine.model import APPLICANT_PARTY, Procedure
from engine.values import Case, HistoryEntry

from . import html
from . import words as words_module
from .qr import qr_svg
from .signing import Signer, qr_payload

#: The document id `document_html`'s callers use for the receipt (an issued document
#: declared with this id is that document, not the receipt).
RECEIPT = "receipt"
#: The name of the meta element holding a signed page's verification code.
CODE_META = "guichet-verification"
#: The largest page `issued_text_of` reads.
MAX_PAGE_CHARS = 4 * 1024 * 1024


_WORDS: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "reference": "Référence", "issued_on": "Délivré le", "receipt": "Récépissé de dépôt",
        "procedure": "Procédure", "filed_on": "Déposé le", "applicant": "Demandeur",
        "fees_due": "Frais dus", "fees_paid": "Frais payés", "outstanding": "Reste à payer",
        "documents": "Pièces jointes", "none": "aucune", "bytes": "octets",
        "claim_code": "Code de rattachement (pour retrouver le dossier en ligne)",
        "state": "Étape", "verification": "Vérification",
        "verify_hint": "Ce document est signé électroniquement. Pour vérifier qu'il est "
                       "authentique et n'a pas été modifié, saisissez ce code avec son texte "
                       "(guichet verify) ou scannez le code QR.",
        "qr_title": "Code QR de vérification", "issued_by": "Délivré par",
    },
    "en": {
        "reference": "Reference", "issued_on": "Issued on", "receipt": "Filing receipt",
        "procedure": "Procedure", "filed_on": "Filed on", "applicant": "Applicant",
        "fees_due": "Fees due", "fees_paid": "Fees paid", "outstanding": "Still to pay",
        "documents": "Documents attached", "none": "none", "bytes": "bytes",
        "claim_code": "Claim code (to find the case online)",
        "state": "Step", "verification": "Verification",
        "verify_hint": "This document is signed electronically. To check that it is authentic "
                       "and unchanged, enter this code with its text (guichet verify) or scan "
                       "the QR code.",
        "qr_title": "Verification QR code", "issued_by": "Issued by",
    },
}


class DocumentNotIssued(LookupError):
    """The case's history holds no such issued document (or no text in any language)."""


@dataclass(frozen=True)
class Issued:
    """One issued document as the history keeps it: its id, title and text in the chosen
    language, and when it was issued."""

    document_id: str
    title: str
    text: str
    at: dt.datetime
    sequence: int


def find_issued(history: Iterable[HistoryEntry], document_id: str, language: str = "fr"
                ) -> Issued:
    """The latest issue of `document_id` in a case's history, in `language` (French, then
    English, when it has no text in that language); DocumentNotIssued when there is none."""
    found: Issued | None = None
    for entry in history:
        for item in entry.issued:
            if item.get("id") != document_id:
                continue
            text = _in(item.get("text"), language)
            if text is None:
                continue
            found = Issued(document_id, _in(item.get("title"), language) or document_id,
                           text, entry.at, entry.sequence)
    if found is None:
        raise DocumentNotIssued(f'no document "{document_id}" was issued on this case')
    return found


def issued_ids(history: Iterable[HistoryEntry]) -> list[str]:
    """The ids of the documents issued on a case, in order of first issue."""
    return list(dict.fromkeys(str(item.get("id")) for entry in history
                              for item in entry.issued))


def _in(texts: Any, language: str) -> str | None:
    if isinstance(texts, str):
        return texts
    if not isinstance(texts, Mapping):
        return None
    for key in (language, "fr", "en"):
        value = texts.get(key)
        if isinstance(value, str):
            return value
    return None


def document_html(procedure: Procedure, case: Case, document_id: str, language: str = "fr",
                  *, signer: Signer | None = None, issued_text: str | None = None,
                  history: Sequence[HistoryEntry] = (), issued_at: dt.datetime | None = None
                  ) -> str:
    """A whole HTML page, print-ready on A4, for the issued document `document_id` (as
    declared in `issue:`) of `case`: the text given as `issued_text`, else the latest issue of
    that document in `history` (DocumentNotIssued when there is none). `receipt` gives the
    receipt unless the procedure issues a document with that id."""
    if issued_text is None and document_id == RECEIPT and not _declared(procedure, RECEIPT):
        return receipt_html(procedure, case, language, signer=signer)
    if issued_text is None:
        issued = find_issued(history, document_id, language)
    else:
        issued = Issued(document_id, _title(procedure, document_id, language), issued_text,
                        issued_at or case.updated_at, 0)
    return _page(procedure, case, language, signer, issued)


def receipt_text(procedure: Procedure, case: Case, language: str = "fr") -> str:
    """The receipt's text (what is printed and signed), one line per item."""
    words = _WORDS[_language(language)]
    sep = " : " if language == "fr" else ": "
    state = procedure.states.get(case.state)
    lines = [
        f"{words['reference']}{sep}{case.reference}",
        f"{words['procedure']}{sep}{procedure.title.get(language)}",
        f"{words['filed_on']}{sep}{format_date(case.created_at, language)}",
        f"{words['applicant']}{sep}{_applicant(procedure, case)}",
        f"{words['state']}{sep}{state.label.get(language) if state else case.state}",
        f"{words['fees_due']}{sep}{format_amount(case.fees_due, language)}",
        f"{words['fees_paid']}{sep}{format_amount(case.fees_paid, language)}",
    ]
    if case.fees_outstanding:
        lines.append(f"{words['outstanding']}{sep}"
                     f"{format_amount(case.fees_outstanding, language)}")
    lines.append(f"{words['documents']}{sep}{'' if case.documents else words['none']}"
                 .rstrip())
    for attached in case.documents:
        declared = procedure.document(attached.document_id)
        label = declared.label.get(language) if declared else attached.document_id
        lines.append(f"- {label}{sep}{attached.filename} "
                     f"({format_number(attached.size, language)} {words['bytes']})")
    if case.claim_code:
        lines.append(f"{words['claim_code']}{sep}{case.claim_code}")
    return "\n".join(lines)


def receipt_html(procedure: Procedure, case: Case, language: str = "fr", *,
                 signer: Signer | None = None) -> str:
    """The receipt of `case` as a whole HTML page, print-ready on A4 (signed with `signer`
    under the document id `receipt`)."""
    words = _WORDS[_language(language)]
    issued = Issued(RECEIPT, words["receipt"], receipt_text(procedure, case, language),
                    case.updated_at, 0)
    return _page(procedure, case, language, signer, issued)


def _page(procedure: Procedure, case: Case, language: str, signer: Signer | None,
          issued: Issued) -> str:
    language = _language(language)
    words = _WORDS[language]
    code = signer.sign(case.reference, issued.document_id, issued.text) if signer else None
    authority = [t.get(language) for t in (procedure.ministry, procedure.directorate) if t]
    return html.render(
        "document.html.j2", language=language, words=words, authority=authority,
        procedure_title=procedure.title.get(language), title=issued.title,
        reference=case.reference, date=format_date(issued.at, language), text=issued.text,
        code=code, code_meta=CODE_META,
        qr=Markup(qr_svg(qr_payload(code), title=words["qr_title"])) if code else None,
    )


def _declared(procedure: Procedure, document_id: str) -> bool:
    return any(item.id == document_id for t in procedure.transitions for item in t.issue)


def _title(procedure: Procedure, document_id: str, language: str) -> str:
    for transition in procedure.transitions:
        for item in transition.issue:
            if item.id == document_id:
                return item.title.get(language) or document_id
    return document_id


def _applicant(procedure: Procedure, case: Case) -> str:
    """The applicant's name as the form holds it (the applicant party's `name:` field), with
    their account id; the account id alone otherwise."""
    party = procedure.parties.get(APPLICANT_PARTY)
    name = case.data.get(party.name) if party and party.name else None
    who = case.applicant_id or "—"
    return f"{name} ({who})" if isinstance(name, str) and name.strip() else who


def _language(language: str) -> str:
    return language if language in _WORDS else "fr"


def format_date(moment: dt.date | dt.datetime, language: str = "fr") -> str:
    """« 2 mars 2026 », « 1er juin 2026 » / "2 March 2026": see renderers.words."""
    day = moment.date() if isinstance(moment, dt.datetime) else moment
    return words_module.date(day, _language(language))


def format_number(number: int, language: str = "fr") -> str:
    """25 000 (a narrow no-break space between thousands) / 25,000: see renderers.words."""
    return words_module.number(number, _language(language))


def format_amount(amount: int, language: str = "fr") -> str:
    """« 25 000 FCFA » / "XOF 25,000": the one way the renderers write an amount
    (renderers.words.xof)."""
    return words_module.xof(amount, _language(language))


# --- reading a saved page back (guichet verify --file) ----------------------------------------

class _Reader(HTMLParser):
    """Collects the text of the element with id `issued-text` and the verification code's
    meta element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # > 0 inside #issued-text
        self.parts: list[str] = []
        self.found = False
        self.code: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name") == CODE_META and self.code is None:
            self.code = values.get("content")
        if self.depth:
            self.depth += tag not in _VOID
            if tag == "br":
                self.parts.append("\n")
        elif values.get("id") == "issued-text" and not self.found:
            self.found, self.depth = True, 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in _VOID:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


_VOID = frozenset({"br", "meta", "img", "hr", "wbr", "input", "link", "source"})


def read_page(page: str) -> tuple[str | None, str | None]:
    """From a page `document_html` or `receipt_html` wrote: (its signed text, its
    verification code), each None when not found."""
    if len(page) > MAX_PAGE_CHARS:
        return None, None
    reader = _Reader()
    try:
        reader.feed(page)
        reader.close()
    except (ValueError, AssertionError, RecursionError):  # pragma: no cover - parser limits
        return None, None
    return ("".join(reader.parts) if reader.found else None), reader.code

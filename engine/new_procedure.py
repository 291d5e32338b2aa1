"""`guichet new PROCEDURE_ID`: a small valid procedure and its scenarios to start from.

The procedure has the `$schema` modeline, a citizen role who opens cases and an agent who
decides, one field, one document, one fee, and draft -> submitted -> accepted | rejected, every
text in French and English. Two scenarios (accepted, rejected) cover every transition, so
`guichet validate` reports nothing and `guichet test DIR --coverage` passes at 100%.

The templates are plain text; `__ID__` is replaced by the procedure id (an identifier, so no
escaping is needed), `__SCHEMA__` by the path of the published schema relative to the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")

PROCEDURE_TEMPLATE = """\
# yaml-language-server: $schema=__SCHEMA__
#
# A new procedure: replace the texts, fields, documents and fees with the real ones, then
# `guichet validate` and `guichet test --coverage` (the scenarios are in tests/__ID__/).
id: __ID__                            # stable id, never changes
version: "2026.1"
title: {fr: Nouvelle démarche, en: New procedure}
authority:
  ministry: {fr: Ministère à préciser, en: Ministry to be named}
processing_time: 10 business days

roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  agent: {label: {fr: Agent instructeur, en: Case officer}}
start:
  roles: [applicant]                  # who may open a case (and owns the cases they open)

fields:
  - id: full_name
    type: string
    label: {fr: Nom et prénoms, en: Full name}
    required: true
    max_length: 100

documents:
  - id: identity_document
    label: {fr: Pièce d'identité, en: Identity document}
    media_types: [application/pdf, image/jpeg]
    max_size: 5 MB

fees:
  - {id: fee, label: {fr: Frais de dossier, en: Application fee}, amount: 1000, due: submit}

states:
  draft:
    label: {fr: Brouillon, en: Draft}
    initial: true
    editable: true                    # the applicant may change the form here
  submitted: {label: {fr: Déposée, en: Submitted}}
  accepted: {label: {fr: Acceptée, en: Accepted}, final: accepted}
  rejected: {label: {fr: Rejetée, en: Rejected}, final: rejected}

transitions:
  - trigger: submit
    label: {fr: Déposer la demande, en: Submit the application}
    from: draft
    to: submitted
    roles: [applicant]
    requires: {fields: all, documents: all}   # and the fee due at submit must be paid
  - trigger: accept
    label: {fr: Accepter, en: Accept}
    from: submitted
    to: accepted
    roles: [agent]
  - trigger: reject
    label: {fr: Rejeter, en: Reject}
    from: submitted
    to: rejected
    roles: [agent]
    input:                            # data the agent must supply at this step
      - {id: reason, type: text, label: {fr: Motif, en: Reason}, required: true}
"""

_SCENARIO_START = """\
procedure: __ID__
name: __NAME__
steps:
  - start: {full_name: Afi Mensah}
    as: applicant:citizen-1
    expect: {state: draft, fees_due: 1000, documents_missing: [identity_document]}
  - attach: identity_document
    as: applicant:citizen-1
  - pay: due
    as: applicant:citizen-1
  - fire: submit
    as: applicant:citizen-1
    expect: {state: submitted}
"""

SCENARIO_TEMPLATES = {
    "happy_path.yaml": _SCENARIO_START.replace("__NAME__", "submitted and accepted") + """\
  - fire: accept
    as: agent:agent-1
    expect: {state: accepted, outcome: accepted}
""",
    "rejected.yaml": _SCENARIO_START.replace("__NAME__", "submitted and rejected") + """\
  - fire: reject
    as: agent:agent-1
    expect:
      refused: {contains: reason}
  - fire: reject
    data: {reason: Pièce d'identité illisible}
    as: agent:agent-1
    expect: {state: rejected, outcome: rejected}
""",
}


class NewProcedureError(Exception):
    """The procedure cannot be written (a bad id, a file already there); one line."""


@dataclass(frozen=True)
class NewFile:
    path: Path
    text: str


def schema_reference(directory: Path) -> str:
    """The published schema's path relative to `directory` (as in procedures/*.yaml),
    or its file URI when no relative path exists (another drive)."""
    schema = (Path(__file__).parent / "schema" / "procedure.schema.json").resolve()
    try:
        return Path(os.path.relpath(schema, directory.resolve())).as_posix()
    except ValueError:  # pragma: no cover - Windows, another drive
        return schema.as_uri()


def plan(procedure_id: str, directory: str | Path) -> list[NewFile]:
    """The files `guichet new` writes: `DIRECTORY/ID.yaml` and `DIRECTORY/tests/ID/*.yaml`.

    Raises NewProcedureError for an id that is not an identifier or when any file exists."""
    if not IDENTIFIER.fullmatch(procedure_id):
        raise NewProcedureError(
            f"invalid procedure id {procedure_id!r}: use lowercase letters, digits and _, "
            "starting with a letter (e.g. birth_certificate)")
    directory = Path(directory)
    procedure_text = (PROCEDURE_TEMPLATE.replace("__SCHEMA__", schema_reference(directory))
                      .replace("__ID__", procedure_id))
    files = [NewFile(directory / f"{procedure_id}.yaml", procedure_text)]
    files += [NewFile(directory / "tests" / procedure_id / name,
                      template.replace("__ID__", procedure_id))
              for name, template in SCENARIO_TEMPLATES.items()]
    for new in files:
        if new.path.exists() or new.path.is_symlink():
            raise NewProcedureError(f"{new.path} already exists: nothing written")
    return files


def write(procedure_id: str, directory: str | Path) -> list[Path]:
    """Write the new procedure and its scenarios; never overwrites (NewProcedureError)."""
    files = plan(procedure_id, directory)
    written: list[Path] = []
    for new in files:
        new.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with new.path.open("x", encoding="utf-8", newline="\n") as stream:
                stream.write(new.text)
        except FileExistsError:  # created meanwhile
            raise NewProcedureError(f"{new.path} already exists: nothing more written") from None
        written.append(new.path)
    return written

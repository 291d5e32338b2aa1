"""Issue 10: what real procedures need, through the Engine (SQLite and PostgreSQL).

An amount set at a step, refusals a citizen can read, choices that depend on other answers,
durations read from the form, staff correcting declared fields, follow-up cases and
transitions after the decision. One small procedure family exercises them all.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import MakeEngine

from cli import main
from engine import (
    Actor,
    Blocked,
    Engine,
    InvalidData,
    NotAllowed,
    ProcedureError,
    compile_source,
    lint,
)
from engine.analysis.explore import explore
from engine.analysis.loadsim import LoadParameters, simulate_load
from engine.model import Duration, Procedure
from engine.values import SYSTEM

CITIZEN = Actor("citizen-1", ["citizen"])
OTHER = Actor("citizen-2", ["citizen"])
TECHNICIAN = Actor("tech-1", ["technician"])
AGENT = Actor("agent-1", ["agent"])

PERMIT = """
id: permit
version: "1"
title: {fr: Permis, en: Permit}
authority: {ministry: Ministère}
start: {roles: [citizen]}
validity: {field: months, unit: months}
roles:
  citizen: {label: {fr: Usager, en: Citizen}}
  technician: {label: {fr: Technicien, en: Technician}}
  agent: {label: {fr: Agent, en: Agent}}
  system: {label: {fr: Système, en: System}}
fields:
  - {id: surname, type: string, label: {fr: Nom, en: Surname}, required: true}
  - {id: nationality, type: country, label: {fr: Nationalité, en: Nationality}, required: true}
  - id: profile
    type: choice
    label: {fr: Profil, en: Profile}
    required: true
    options:
      - {value: student, label: {fr: Étudiant, en: Student}}
      - {value: worker, label: {fr: Salarié, en: Worker}}
  - id: months
    type: integer
    label: {fr: Durée (mois), en: Duration (months)}
    required: true
    min: 1
    max: 24
  - id: plan
    type: choice
    label: {fr: Formule, en: Plan}
    options:
      - {value: basic, label: {fr: Simple, en: Basic}}
      - {value: long, label: {fr: Longue, en: Long}, when: "profile == 'worker'"}
      - {value: odd, label: {fr: Bizarre, en: Odd}, when: "months / 0 > 1"}
  - {id: parcel, type: string, label: {fr: Parcelle, en: Parcel}}
  - {id: plan_note, type: text, label: {fr: Note, en: Note}, when: "plan == 'long'"}
fees:
  - {id: quote, label: {fr: Devis, en: Quote}, amount: {from: quote_amount}, due: pay_quote}
  - {id: metres, label: {fr: Mètres, en: Metres}, amount: 1000, per: metres, due: pay_quote}
states:
  review:
    label: {fr: Examen, en: Review}
    initial: true
    editable:
      - {roles: [citizen]}
      - {roles: [agent], fields: [surname]}
  visited:
    label: {fr: Visité, en: Visited}
    editable: {roles: [agent], fields: [surname, parcel]}
    deadlines:
      - {after: {field: months, unit: days}, trigger: expire}
  quoted: {label: {fr: Devis établi, en: Quoted}}
  granted:
    label: {fr: Accordé, en: Granted}
    final: accepted
    follow_ups: [{procedure: renewal, carry: {holder: surname}}]
  revoked: {label: {fr: Retiré, en: Revoked}, final: revoked}
  expired: {label: {fr: Expiré, en: Expired}, final: expired}
transitions:
  - trigger: visit
    label: {fr: Enregistrer la visite, en: Record the visit}
    from: review
    to: visited
    roles: [technician]
    when: nationality != 'TG'
    message:
      fr: Les ressortissants togolais n'ont pas besoin de permis.
      en: Togolese nationals need no permit.
  - trigger: odd
    label: {fr: Étape sans message, en: Step without message}
    from: review
    to: visited
    roles: [agent]
    when: "months > 12"
  - trigger: quote
    label: {fr: Établir le devis, en: Enter the quote}
    from: visited
    to: quoted
    roles: [technician]
    input:
      - {id: quote_amount, type: integer, required: true, min: 1, max: 10000000,
         label: {fr: Montant, en: Amount}}
      - {id: metres, type: integer, min: 0, max: 1000, label: {fr: Mètres, en: Metres}}
  - trigger: pay_quote
    label: {fr: Valider le paiement, en: Confirm payment}
    from: quoted
    to: granted
    roles: [citizen]
    issue:
      - id: permit
        title: {fr: Permis, en: Permit}
        template:
          fr: "Permis {{ reference }} valable jusqu'au {{ valid_until }}."
          en: "Permit {{ reference }} valid until {{ valid_until }}."
    opens: {procedure: inspection, carry: {parcel: parcel, owner: surname}}
  - {trigger: revoke, label: {fr: Retirer, en: Revoke}, from: granted, to: revoked, roles: [agent]}
  - {trigger: expire, from: visited, to: expired, roles: [system]}
"""

INSPECTION = """
id: inspection
version: "1"
title: {fr: Inspection, en: Inspection}
authority: {ministry: Ministère}
start: {roles: [citizen]}
roles:
  citizen: {label: {fr: Usager, en: Citizen}}
  agent: {label: {fr: Agent, en: Agent}}
fields:
  - {id: parcel, type: string, label: {fr: Parcelle, en: Parcel}, required: true}
  - {id: owner, type: string, label: {fr: Propriétaire, en: Owner}, required: true}
states:
  planned: {label: {fr: Prévue, en: Planned}, initial: true}
  done: {label: {fr: Faite, en: Done}, final: accepted}
transitions:
  - {trigger: inspect, from: planned, to: done, roles: [agent], requires: {fields: all}}
"""

RENEWAL = """
id: renewal
version: "1"
title: {fr: Renouvellement, en: Renewal}
authority: {ministry: Ministère}
start: {roles: [citizen]}
roles:
  citizen: {label: {fr: Usager, en: Citizen}}
  agent: {label: {fr: Agent, en: Agent}}
fields:
  - {id: holder, type: string, label: {fr: Titulaire, en: Holder}, required: true}
  - {id: reason, type: text, label: {fr: Motif, en: Reason}}
states:
  asked: {label: {fr: Demandé, en: Asked}, initial: true}
  done: {label: {fr: Fait, en: Done}, final: accepted}
transitions:
  - {trigger: renew, from: asked, to: done, roles: [agent], requires: {fields: all}}
"""


def compiled(text: str, name: str) -> Procedure:
    procedure, diagnostics = compile_source(textwrap.dedent(text), name)
    assert procedure is not None, [str(d) for d in diagnostics]
    return procedure


@pytest.fixture
def family() -> list[Procedure]:
    return [compiled(PERMIT, "permit.yaml"), compiled(INSPECTION, "inspection.yaml"),
            compiled(RENEWAL, "renewal.yaml")]


@pytest.fixture
def permits(make_engine: MakeEngine, database_url: str, family: list[Procedure]) -> Engine:
    return make_engine(database_url, family)


def opened(engine: Engine, **data: object) -> str:
    given = {"surname": "Mensah", "nationality": "GH", "profile": "student", "months": 6,
             "parcel": "LOT-12", **data}
    return engine.start("permit", CITIZEN, given).reference


def quoted(engine: Engine, amount: int = 150_000, **data: object) -> str:
    reference = opened(engine, **data)
    engine.fire(reference, "visit", TECHNICIAN)
    engine.fire(reference, "quote", TECHNICIAN, {"quote_amount": amount})
    return reference


# --- 1. an amount decided at a step ---------------------------------------------------------------

def test_a_fee_read_from_a_step_input_is_due_once_the_input_is_set(permits: Engine) -> None:
    reference = opened(permits)
    assert permits.case(reference, CITIZEN).fees_due == 0
    permits.fire(reference, "visit", TECHNICIAN)
    case = permits.fire(reference, "quote", TECHNICIAN, {"quote_amount": 150_000,
                                                         "metres": 12})
    assert case.fees_due == 150_000 + 12 * 1000
    with pytest.raises(Blocked) as blocked:
        permits.fire(reference, "pay_quote", CITIZEN)
    assert [r.code for r in blocked.value.reasons] == ["payment"]
    permits.pay(reference, 162_000, "tmoney", "TM-1", CITIZEN)
    assert permits.fire(reference, "pay_quote", CITIZEN).state == "granted"


def test_the_history_shows_who_set_the_amount(permits: Engine) -> None:
    reference = quoted(permits, 98_000)
    entry = permits.history(reference, AGENT)[-1]
    assert (entry.trigger, entry.actor_id, entry.actor_role) == ("quote", "tech-1", "technician")
    assert entry.payload["quote_amount"] == 98_000


# --- 2. refusals a citizen can read ---------------------------------------------------------------

def test_a_guard_refusal_says_the_authors_message_never_the_expression(permits: Engine
                                                                        ) -> None:
    reference = opened(permits, nationality="TG")
    with pytest.raises(Blocked) as blocked:
        permits.fire(reference, "visit", TECHNICIAN)
    french, english = blocked.value.message("fr"), blocked.value.message("en")
    assert "Les ressortissants togolais n'ont pas besoin de permis." in french
    assert "Togolese nationals need no permit." in english
    assert "« Enregistrer la visite » est impossible" in french
    assert "nationality" not in french + english
    assert blocked.value.reasons[0].detail == "nationality != 'TG'"


def test_without_a_message_the_refusal_names_the_transition_label(permits: Engine) -> None:
    reference = opened(permits)
    with pytest.raises(Blocked) as blocked:
        permits.fire(reference, "odd", AGENT)
    english = blocked.value.message("en")
    assert 'the conditions for "Step without message" are not met' in english
    assert "months" not in english and blocked.value.reasons[0].detail == "months > 12"


# --- 3. choices that depend on other answers ------------------------------------------------------

def test_an_option_is_offered_only_when_its_condition_holds(permits: Engine) -> None:
    with pytest.raises(InvalidData) as invalid:
        opened(permits, profile="student", plan="long")
    assert list(invalid.value.errors) == ["plan"]
    assert invalid.value.errors["plan"]["en"] == "choice not offered for this case: Long"
    reference = opened(permits, profile="worker", plan="long")
    assert permits.case(reference, CITIZEN).data["plan"] == "long"
    with pytest.raises(InvalidData):  # changed later: checked against the new answers
        permits.update(reference, CITIZEN, {"profile": "student", "plan": "long"})
    with pytest.raises(InvalidData) as withdrawn:  # a change withdrawing the option chosen
        permits.update(reference, CITIZEN, {"profile": "student"})
    assert list(withdrawn.value.errors) == ["plan"]
    assert permits.update(reference, CITIZEN, {"profile": "student", "plan": "basic"}
                          ).data["plan"] == "basic"


def test_an_option_whose_condition_cannot_be_evaluated_is_not_offered(permits: Engine) -> None:
    with pytest.raises(InvalidData) as invalid:
        opened(permits, plan="odd")
    assert list(invalid.value.errors) == ["plan"]


# --- 4. durations from the form -------------------------------------------------------------------

def test_validity_read_from_a_field_dates_the_issued_document(permits: Engine) -> None:
    reference = quoted(permits, 1000, months=6)
    permits.pay(reference, 1000, "tmoney", "TM-2", CITIZEN)
    permits.fire(reference, "pay_quote", CITIZEN)
    issued = permits.history(reference, CITIZEN)[-1].issued[0]
    assert permits.clock().date() == dt.date(2026, 3, 2)
    assert issued["text"]["en"] == f"Permit {reference} valid until 2026-09-01."


@pytest.mark.parametrize(("amount", "unit", "first", "last"), [
    (12, "months", dt.date(2026, 1, 5), dt.date(2027, 1, 4)),
    (1, "months", dt.date(2026, 1, 31), dt.date(2026, 2, 27)),
    (5, "years", dt.date(2024, 2, 29), dt.date(2029, 2, 27)),
    (10, "days", dt.date(2026, 1, 1), dt.date(2026, 1, 10)),
    (2, "business_days", dt.date(2026, 3, 6), dt.date(2026, 3, 9)),
])
def test_a_validity_ends_on_the_calendar(amount: int, unit: str, first: dt.date,
                                         last: dt.date) -> None:
    assert Duration(amount, unit).last_day(first) == last


def test_a_deadline_read_from_a_field_falls_after_that_many_units(permits: Engine) -> None:
    reference = opened(permits, months=4)
    permits.fire(reference, "visit", TECHNICIAN)
    due = [t for t in permits.timers(reference) if t["kind"] == "deadline"]
    assert [t["due_at"] - permits.clock() for t in due] == [dt.timedelta(days=4)]


# --- 5. staff correct declared fields -------------------------------------------------------------

def test_staff_correct_the_fields_a_state_lets_them_recorded_with_before_and_after(
        permits: Engine) -> None:
    reference = opened(permits, surname="Mensa")
    permits.fire(reference, "visit", TECHNICIAN)
    case = permits.update(reference, AGENT, {"surname": "Mensah", "parcel": "LOT-21"})
    assert (case.data["surname"], case.data["parcel"]) == ("Mensah", "LOT-21")
    entry = permits.history(reference, SYSTEM)[-1]
    assert (entry.trigger, entry.actor_id, entry.actor_role) == ("@edit", "agent-1", "agent")
    assert entry.changes["surname"] == {"before": "Mensa", "after": "Mensah"}
    with pytest.raises(InvalidData) as invalid:
        permits.update(reference, AGENT, {"months": 12})
    assert list(invalid.value.errors) == ["months"]
    with pytest.raises(NotAllowed):  # the applicant may no longer edit here
        permits.update(reference, CITIZEN, {"surname": "X"})
    with pytest.raises(NotAllowed):  # nor a role the state does not name
        permits.update(reference, TECHNICIAN, {"surname": "X"})


def test_in_a_state_granting_both_the_applicant_edits_everything_staff_some(
        permits: Engine) -> None:
    reference = opened(permits)
    assert permits.update(reference, CITIZEN, {"months": 9}).data["months"] == 9
    assert permits.update(reference, AGENT, {"surname": "Afi"}).data["surname"] == "Afi"
    with pytest.raises(InvalidData):
        permits.update(reference, AGENT, {"parcel": "LOT-1"})


# --- 8. life after the decision -------------------------------------------------------------------

def test_a_transition_opens_a_linked_follow_up_with_the_data_carried_over(
        permits: Engine) -> None:
    reference = quoted(permits, 1000)
    permits.pay(reference, 1000, "tmoney", "TM-3", CITIZEN)
    granted = permits.fire(reference, "pay_quote", CITIZEN)
    assert len(granted.follow_ups) == 1
    child = permits.case(granted.follow_ups[0], CITIZEN)  # the applicant's own case
    assert (child.procedure_id, child.parent, child.applicant_id) == (
        "inspection", reference, "citizen-1")
    assert dict(child.data) == {"parcel": "LOT-12", "owner": "Mensah"}
    assert permits.case(reference, CITIZEN).follow_ups == (child.reference,)
    first = permits.history(child.reference, SYSTEM)[0]
    assert (first.actor_id, first.payload["parent"]) == ("system", reference)
    assert permits.history(reference, SYSTEM)[-1].payload["@follow_up"] == child.reference
    assert permits.fire(child.reference, "inspect", AGENT).state == "done"


def test_a_final_state_offers_a_follow_up_its_applicant_opens_with_parent(
        permits: Engine) -> None:
    reference = quoted(permits, 1000)
    with pytest.raises(NotAllowed):  # not offered before the decision
        permits.start("renewal", CITIZEN, parent=reference)
    permits.pay(reference, 1000, "tmoney", "TM-4", CITIZEN)
    permits.fire(reference, "pay_quote", CITIZEN)
    with pytest.raises(NotAllowed):  # not their case
        permits.start("renewal", OTHER, parent=reference)
    renewal = permits.start("renewal", CITIZEN, {"reason": "expiry"}, parent=reference)
    assert dict(renewal.data) == {"holder": "Mensah", "reason": "expiry"}
    assert renewal.parent == reference
    assert renewal.reference in permits.case(reference, CITIZEN).follow_ups


def test_a_decided_case_may_move_to_another_final_state(permits: Engine) -> None:
    reference = quoted(permits, 1000)
    permits.pay(reference, 1000, "tmoney", "TM-5", CITIZEN)
    permits.fire(reference, "pay_quote", CITIZEN)
    case = permits.fire(reference, "revoke", AGENT)
    assert (case.state, case.outcome) == ("revoked", "revoked")


def test_the_engine_refuses_a_follow_up_it_could_not_open(make_engine: MakeEngine,
                                                          sqlite_url: str) -> None:
    with pytest.raises(ProcedureError) as refused:
        make_engine(sqlite_url, [compiled(PERMIT, "permit.yaml")])
    assert {d.rule for d in refused.value.diagnostics} == {"follow-up"}
    assert "inspection" in str(refused.value)


def test_lint_checks_follow_ups_between_the_files_it_reads(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "permit.yaml").write_text(textwrap.dedent(PERMIT), encoding="utf-8")
    (folder / "renewal.yaml").write_text(
        textwrap.dedent(RENEWAL).replace("id: holder", "id: titular"), encoding="utf-8")
    found = [(d.severity, d.message) for d in lint([folder]) if d.rule == "follow-up"]
    assert found == [
        ("error", 'procedure "renewal" has no field "holder"'),
        ("warning", 'follow-up procedure "inspection" is not among the procedures loaded'),
    ]


# --- the proof tools see the same semantics ------------------------------------------------------

def test_explore_goes_on_after_the_decision_and_times_deadlines_read_from_the_form(
        family: list[Procedure]) -> None:
    report = explore(family[0], today=dt.date(2026, 11, 30))
    assert {"revoked", "expired"} <= set(report.states_reached)
    assert not [f for f in report.findings if f.kind == "unreachable-state"]


def test_the_load_simulation_times_a_deadline_read_from_the_form() -> None:
    """Nobody submits: every draft waits out its deadline, `days` days (10 to 30 in the
    form: 20 typically), and expires then."""
    draft = compiled("""
        id: draft
        version: "1"
        title: {fr: Brouillon, en: Draft}
        authority: {ministry: Ministère}
        start: {roles: [citizen]}
        roles:
          citizen: {label: {fr: Usager, en: Citizen}}
          system: {label: {fr: Système, en: System}}
        fields:
          - {id: days, type: integer, required: true, min: 10, max: 30,
             label: {fr: Jours, en: Days}}
        states:
          open:
            label: {fr: Ouvert, en: Open}
            initial: true
            deadlines: [{after: {field: days, unit: days}, trigger: expire}]
          done: {label: {fr: Fait, en: Done}, final: accepted}
          expired: {label: {fr: Expiré, en: Expired}, final: expired}
        transitions:
          - {trigger: submit, from: open, to: done, roles: [citizen]}
          - {trigger: expire, from: open, to: expired, roles: [system]}
        """, "draft.yaml")
    params = LoadParameters.from_procedure(draft, days=60, arrivals_per_day=5, seed=1,
                                           delays={"open": "90 days"})
    report = simulate_load(draft, params)
    assert report.forced.get("expired", 0) > 0
    assert report.outcomes.get("expired", 0) == report.forced["expired"]


def test_the_command_line_opens_a_follow_up_and_shows_the_link(
        tmp_path: Path, family: list[Procedure]) -> None:
    folder = tmp_path / "procedures"
    folder.mkdir()
    for name, text in (("permit", PERMIT), ("inspection", INSPECTION), ("renewal", RENEWAL)):
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'g.db'}"

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["case", *args, "--db", db, "--procedures",
                                           str(folder), "--json"])
        assert result.exit_code == 0, result.output
        return result.stdout

    data = json.dumps({"surname": "Mensah", "nationality": "GH", "profile": "student",
                       "months": 6})
    reference = json.loads(run("start", "permit", "--as", "citizen:c1", "--data", data))[
        "reference"]
    run("fire", reference, "visit", "--as", "technician:t1")
    run("fire", reference, "quote", "--as", "technician:t1", "--data", '{"quote_amount": 5}')
    run("pay", reference, "5", "--provider", "tmoney", "--provider-reference", "P1",
        "--as", "citizen:c1")
    run("fire", reference, "pay_quote", "--as", "citizen:c1")
    renewal = json.loads(run("start", "renewal", "--parent", reference, "--as", "citizen:c1"))
    assert (renewal["parent"], renewal["data"]) == (reference, {"holder": "Mensah"})
    shown = json.loads(run("show", reference, "--as-system"))
    assert len(shown["follow_ups"]) == 2 and renewal["reference"] in shown["follow_ups"]

"""Payment methods as data (issue 10, point 7).

A procedure may declare `payment_methods:` ({id, label}); `Engine.pay(..., method=...)` must
then name one of them (InvalidData on "method" listing them, fr/en), while a procedure
declaring none records any method, or none. The method is stored in `payments.method`;
`Engine.payment_statistics` sums payments by method in the database; `guichet payments`
prints it for whoever may read the procedure's cases. Scenario step `pay:` + `method:`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner
from click.testing import Result as CliResult
from helpers import APPLICANT, MakeEngine, criminal_record_data

from cli import main
from engine import (
    Actor,
    Engine,
    InvalidData,
    NotAllowed,
    PaymentTotal,
    compile_source,
    load_procedure,
)
from engine.analysis.scenarios import Runner, load_scenario
from engine.model import PaymentMethod, Text
from engine.values import SYSTEM

PERMIT = """\
id: permit
version: "1"
reference_prefix: PRM
title: {fr: Permis, en: Permit}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  cashier: {label: {fr: Caissier, en: Cashier}}
  auditor: {label: {fr: Auditeur, en: Auditor}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
read: [auditor]
fields:
  - {id: name, type: string, label: {fr: Nom, en: Name}, required: true}
fees:
  - {id: fee, label: {fr: Frais, en: Fee}, amount: 5000, due: close}
payment_methods:
  - {id: tmoney, label: {fr: T-Money, en: T-Money}}
  - {id: cash, label: {fr: Espèces au guichet, en: Cash at the counter}}
states:
  open: {label: {fr: Ouvert, en: Open}, initial: true}
  closed: {label: {fr: Clos, en: Closed}, final: accepted}
transitions:
  - {trigger: close, from: open, to: closed, roles: [cashier]}
"""

CITIZEN = Actor("citizen-1", ["applicant"])
CASHIER = Actor("cashier-1", ["cashier"])
AUDITOR = Actor("audit-1", ["auditor"])
PASSPORT_AGENT = Actor("agent-1", ["agent"])
BY_POST = {"collection_mode": "post", "postal_address": "BP 1, Lomé"}  # 1500 XOF due


def permit_file(tmp_path: Path) -> Path:
    path = tmp_path / "procedures" / "permit.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PERMIT, encoding="utf-8")
    return path


@pytest.fixture
def permits(make_engine: MakeEngine, database_url: str, tmp_path: Path,
            shipped_procedures: list[Any]) -> Engine:
    """The permit and the shipped procedures (the criminal record declares no methods)."""
    return make_engine(database_url,
                       procedures=[load_procedure(permit_file(tmp_path)), *shipped_procedures])


def permit(engine: Engine) -> str:
    return engine.start("permit", CITIZEN, {"name": "Kossi"}).reference


def stored_methods(url: str) -> list[tuple[str, str | None]]:
    raw = sqlalchemy.create_engine(url)
    try:
        with raw.connect() as c:
            return [(r[0], r[1]) for r in c.execute(sqlalchemy.text(
                "SELECT provider_reference, method FROM payments ORDER BY id"))]
    finally:
        raw.dispose()


# --- the procedure ------------------------------------------------------------------------------

def test_the_compiler_reads_the_methods(tmp_path: Path) -> None:
    procedure = load_procedure(permit_file(tmp_path))
    assert procedure.payment_methods == (
        PaymentMethod("tmoney", Text("T-Money", "T-Money"), ("payment_methods", 0)),
        PaymentMethod("cash", Text("Espèces au guichet", "Cash at the counter"),
                      ("payment_methods", 1)))
    assert load_procedure(Path("procedures/passport.yaml")).payment_methods == ()


def test_methods_must_be_well_formed() -> None:
    for bad in ("- {id: Cash, label: Cash}", "- {id: cash}", "- {id: cash, label: C, fee: 1}"):
        text = PERMIT.replace("  - {id: tmoney, label: {fr: T-Money, en: T-Money}}\n",
                              f"  {bad}\n")
        procedure, diagnostics = compile_source(text, "permit.yaml")
        assert procedure is None, bad
        assert any(d.severity == "error" for d in diagnostics), bad


# --- paying -------------------------------------------------------------------------------------

def test_a_declared_method_is_required_and_recorded(permits: Engine, database_url: str) -> None:
    reference = permit(permits)
    with pytest.raises(InvalidData) as missing:
        permits.pay(reference, 5000, "tmoney", "TM-1", CITIZEN)
    assert set(missing.value.errors) == {"method"}
    assert missing.value.errors["method"] == {
        "fr": "indiquez le moyen de paiement (acceptés : tmoney (T-Money), "
              "cash (Espèces au guichet))",
        "en": "say how it was paid (accepted: tmoney (T-Money), cash (Cash at the counter))"}
    with pytest.raises(InvalidData) as unknown:
        permits.pay(reference, 5000, "tmoney", "TM-1", CITIZEN, method="cheque")
    assert unknown.value.errors["method"]["en"].startswith("payment method not accepted "
                                                           "(accepted: tmoney (T-Money)")
    assert stored_methods(database_url) == []
    case = permits.pay(reference, 5000, "tmoney", "TM-1", CITIZEN, method="tmoney")
    assert case.fees_paid == 5000
    assert stored_methods(database_url) == [("TM-1", "tmoney")]
    assert permits.history(reference, SYSTEM)[-1].payload == {
        "amount": 5000, "provider": "tmoney", "provider_reference": "TM-1", "method": "tmoney"}


def test_without_declared_methods_any_method_or_none_is_recorded(
        permits: Engine, database_url: str) -> None:
    reference = permits.start("criminal_record", APPLICANT,
                              criminal_record_data(**BY_POST)).reference
    permits.pay(reference, 500, "tmoney", "TM-A", APPLICANT)
    permits.pay(reference, 500, "flooz", "FL-B", APPLICANT, method="mobile_money")
    assert stored_methods(database_url) == [("TM-A", None), ("FL-B", "mobile_money")]
    assert "method" not in permits.history(reference, SYSTEM)[-2].payload


@pytest.mark.parametrize("method", ["", "m" * 65, "cash\x00", "\ud800"])
def test_a_method_is_checked_before_the_database_sees_it(permits: Engine, database_url: str,
                                                         method: str) -> None:
    reference = permits.start("criminal_record", APPLICANT,
                              criminal_record_data(**BY_POST)).reference
    with pytest.raises(InvalidData) as refused:
        permits.pay(reference, 500, "tmoney", "TM-X", APPLICANT, method=method)
    assert set(refused.value.errors) == {"method"}
    assert stored_methods(database_url) == []


def test_paying_again_with_the_same_reference_is_the_same_payment(
        permits: Engine, database_url: str) -> None:
    reference = permit(permits)
    first = permits.pay(reference, 2000, "tmoney", "TM-1", CITIZEN, method="tmoney")
    again = permits.pay(reference, 2000, "tmoney", "TM-1", CITIZEN, method="tmoney")
    assert (again.fees_paid, again.version) == (first.fees_paid, first.version) == (2000, 2)
    with pytest.raises(InvalidData) as other_method:
        permits.pay(reference, 2000, "tmoney", "TM-1", CITIZEN, method="cash")
    assert set(other_method.value.errors) == {"provider_reference"}
    assert stored_methods(database_url) == [("TM-1", "tmoney")]


# --- statistics ---------------------------------------------------------------------------------

def paid_cases(engine: Engine) -> None:
    """Permits paid 5000 by T-Money, 5000 by T-Money, 2000 + 3000 in cash; a criminal record
    paid 1500 with no method."""
    for provider_reference, parts in (("TM-1", [("tmoney", 5000)]),
                                      ("TM-2", [("tmoney", 5000)]),
                                      ("CASH-3", [("cash", 2000), ("cash", 3000)])):
        reference = permit(engine)
        for i, (method, amount) in enumerate(parts):
            engine.pay(reference, amount, "counter", f"{provider_reference}-{i}", CASHIER,
                       method=method)
    record = engine.start("criminal_record", APPLICANT, criminal_record_data(**BY_POST))
    engine.pay(record.reference, 1500, "tmoney", "TM-CR", APPLICANT)


def test_statistics_sum_payments_by_method(permits: Engine) -> None:
    paid_cases(permits)
    assert permits.payment_statistics() == {
        "": PaymentTotal(1, 1500), "cash": PaymentTotal(2, 5000),
        "tmoney": PaymentTotal(2, 10000)}
    assert permits.payment_statistics("permit") == {
        "cash": PaymentTotal(2, 5000), "tmoney": PaymentTotal(2, 10000)}
    assert permits.payment_statistics("criminal_record") == {"": PaymentTotal(1, 1500)}
    assert permits.payment_statistics("passport") == {}


def test_statistics_are_summed_by_the_database(permits: Engine) -> None:
    paid_cases(permits)
    statements: list[str] = []

    def seen(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    database = permits._store.engine
    sqlalchemy.event.listen(database, "before_cursor_execute", seen)
    try:
        permits.payment_statistics("permit")
    finally:
        sqlalchemy.event.remove(database, "before_cursor_execute", seen)
    [query] = [s for s in statements if "payments" in s]
    assert "GROUP BY payments.method" in query and "sum(payments.amount)" in query


def test_statistics_show_only_the_procedures_a_reader_reads(permits: Engine) -> None:
    paid_cases(permits)
    assert permits.payment_statistics(actor=AUDITOR) == {
        "cash": PaymentTotal(2, 5000), "tmoney": PaymentTotal(2, 10000)}
    assert permits.payment_statistics("permit", actor=CASHIER) == permits.payment_statistics(
        "permit")
    assert permits.payment_statistics(actor=CITIZEN) == {}  # a party role reads no procedure
    for reader, procedure in ((AUDITOR, "criminal_record"), (CITIZEN, "permit"),
                              (PASSPORT_AGENT, "permit")):
        with pytest.raises(NotAllowed) as refused:
            permits.payment_statistics(procedure, actor=reader)
        assert refused.value.message("en") == "you may not see the payments of this procedure"


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    monkeypatch.chdir(tmp_path)
    procedures = str(permit_file(tmp_path))
    url = f"sqlite:///{tmp_path / 'cases.db'}"

    def invoke(*args: str, code: int = 0) -> CliResult:
        result = CliRunner().invoke(main, [args[0], "--db", url, "--procedures", procedures,
                                           *args[1:]])
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return invoke


def test_cli_pay_with_a_method_and_payments(run: Callable[..., CliResult]) -> None:
    started = run("case", "start", "permit", "--as", "applicant:citizen-1", "--json",
                  "--data", '{"name": "Kossi"}')
    reference = json.loads(started.stdout)["reference"]
    refused = run("case", "pay", reference, "5000", "--provider", "tmoney",
                  "--provider-reference", "TM-1", "--as", "applicant:citizen-1", "--lang", "en",
                  code=1)
    assert "say how it was paid (accepted: tmoney (T-Money), cash" in refused.stderr
    run("case", "pay", reference, "2000", "--provider", "tmoney", "--provider-reference", "TM-1",
        "--method", "tmoney", "--as", "applicant:citizen-1")
    run("case", "pay", reference, "3000", "--provider", "counter", "--provider-reference", "C-2",
        "--method", "cash", "--as", "cashier:cashier-1")
    as_json = json.loads(run("payments", "--as-system", "--json").stdout)
    assert as_json == {"cash": {"count": 1, "amount": 3000},
                       "tmoney": {"count": 1, "amount": 2000}}
    table = run("payments", "--procedure", "permit", "--as", "auditor:audit-1").stdout
    assert table.splitlines() == ["method  payments  amount (XOF)", "cash    1         3000",
                                  "tmoney  1         2000", "total   2         5000"]
    denied = run("payments", "--procedure", "permit", "--as", "applicant:citizen-1", "--lang",
                 "en", code=1)
    assert "you may not see the payments of this procedure" in denied.stderr
    assert "say who reads" in run("payments", code=2).stderr


# --- scenarios ----------------------------------------------------------------------------------

SCENARIO = """\
procedure: permit
steps:
  - start: {name: Kossi}
    as: applicant:citizen-1
  - pay: 2000
    method: tmoney
    as: applicant:citizen-1
    expect: {fees_paid: 2000}
  - pay: due
    as: applicant:citizen-1
    expect: {refused: invalid_data, fees_paid: 2000}
  - pay: due
    method: cash
    as: cashier:cashier-1
    expect: {fees_paid: 5000}
"""


def test_a_scenario_pays_with_a_method(tmp_path: Path) -> None:
    procedure = load_procedure(permit_file(tmp_path))
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    scenario, diagnostics = load_scenario(path, {"permit": procedure})
    assert scenario is not None and diagnostics == []
    result = Runner([procedure]).run(scenario)
    assert result.passed, result.failures


def test_a_scenario_naming_an_undeclared_method_is_reported(tmp_path: Path) -> None:
    procedure = load_procedure(permit_file(tmp_path))
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("method: cash", "method: cheque"), encoding="utf-8")
    _, diagnostics = load_scenario(path, {"permit": procedure})
    assert [(d.rule, d.message) for d in diagnostics] == [
        ("invalid-value", 'unknown payment method "cheque"')]


def test_interactive_simulation_pays_with_a_method(tmp_path: Path) -> None:
    saved = tmp_path / "session.yaml"
    answers = ["applicant:citizen-1", "Kossi", "pay 2000", "pay 1000 cash", "save " + str(saved),
               "quit"]
    result = CliRunner().invoke(main, ["simulate", str(permit_file(tmp_path)), "--lang", "en"],
                                input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "say how it was paid (accepted: tmoney (T-Money)" in result.output
    steps = saved.read_text(encoding="utf-8")
    assert "method: cash" in steps and "pay: 2000" not in steps

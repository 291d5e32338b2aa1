"""A fee stays due after its `due:` step (README, "Fees stay due"): every later step, staff
and deadline steps included, waits until what became due is paid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import APPLICANT, CLERK, MakeEngine

from engine import Blocked, Engine
from engine.clock import FakeClock

DAY = dt.timedelta(days=1)

PROCEDURE = """\
id: copies
version: "1"
reference_prefix: COP
title: {fr: Copies, en: Copies}
authority: {ministry: {fr: Ministère, en: Ministry}}
roles:
  applicant: {label: {fr: Demandeur, en: Applicant}}
  clerk: {label: {fr: Agent, en: Clerk}}
  system: {label: {fr: Système, en: System}}
start: {roles: [applicant]}
fields:
  - {id: copies, type: integer, label: {fr: Copies, en: Copies}, required: true, min: 1}
fees:
  - {id: copy, label: {fr: Copie, en: Copy}, amount: 100, per: copies, due: submit}
states:
  draft: {label: {fr: Brouillon, en: Draft}, initial: true, editable: true}
  submitted:
    label: {fr: Déposée, en: Submitted}
    editable: true
    deadlines: [{after: 10 days, trigger: close}]
  done: {label: {fr: Délivrée, en: Issued}, final: accepted}
  closed: {label: {fr: Close, en: Closed}, final: expired}
transitions:
  - {trigger: submit, from: draft, to: submitted, roles: [applicant], requires: {fields: all}}
  - {trigger: deliver, from: submitted, to: done, roles: [clerk]}
  - {trigger: close, from: submitted, to: closed, roles: [system]}
"""


@pytest.fixture
def copies(make_engine: MakeEngine, sqlite_url: str, tmp_path: Path) -> Engine:
    source = tmp_path / "copies.yaml"
    source.write_text(PROCEDURE, encoding="utf-8")
    return make_engine(sqlite_url, procedures=source)


def test_a_fee_grown_after_its_step_blocks_every_later_step(copies: Engine,
                                                            clock: FakeClock) -> None:
    reference = copies.start("copies", APPLICANT, {"copies": 1}).reference
    copies.pay(reference, 100, "tmoney", "pay-1", APPLICANT)
    copies.fire(reference, "submit", APPLICANT)
    copies.update(reference, APPLICANT, {"copies": 3})  # 200 more, due since "submit"
    with pytest.raises(Blocked) as blocked:
        copies.fire(reference, "deliver", CLERK)
    assert [(r.code, r.subject) for r in blocked.value.reasons] == [("payment", "deliver")]
    assert "200" in blocked.value.message("en")
    clock.advance(11 * DAY)
    [(_, trigger, result)] = copies.tick()
    assert trigger == "close" and result.startswith("refused") and "200" in result
    copies.pay(reference, 200, "tmoney", "pay-2", APPLICANT)
    assert copies.fire(reference, "deliver", CLERK).state == "done"

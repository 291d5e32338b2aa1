"""engine/machine.py: the `transitions` machine chooses the transition and runs the engine's
callbacks on it (issue 8: the library does real work, not a hand-written loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from helpers import PROCEDURES

from engine import load_procedure
from engine.machine import StateMachine
from engine.model import Transition

# awaiting_signature --sign--> signed, twice: for Togolese applicants and for the others
CRIMINAL_RECORD = load_procedure(PROCEDURES / "criminal_record.yaml")
TOGOLESE, FOREIGNER = "nationality == 'TG'", "not (nationality == 'TG')"


def guard_of(t: Transition) -> str:
    return t.when.source if t.when else ""


def machine(calls: list[str], refuse: bool = False) -> StateMachine[str]:
    """A machine whose guard holds for the transitions named in the context's `ready`."""
    def before(t: Transition, context: Mapping[str, Any]) -> None:
        calls.append(f"before {guard_of(t)}")
        if refuse:
            raise ValueError("refused by the engine")

    def after(t: Transition, context: Mapping[str, Any]) -> str:
        calls.append(f"after {guard_of(t)}")
        return guard_of(t)

    return StateMachine(CRIMINAL_RECORD, lambda t, context: guard_of(t) in context["ready"],
                        before, after)


@pytest.mark.parametrize("ready, chosen", [({TOGOLESE}, TOGOLESE), ({FOREIGNER}, FOREIGNER),
                                           ({TOGOLESE, FOREIGNER}, TOGOLESE)])
def test_the_machine_chooses_the_first_ready_transition_and_runs_both_callbacks(
        ready: set[str], chosen: str) -> None:
    calls: list[str] = []
    assert machine(calls).fire("awaiting_signature", "sign", {"ready": ready}) == chosen
    assert calls == [f"before {chosen}", f"after {chosen}"]


def test_no_guard_holds_no_callback_runs() -> None:
    calls: list[str] = []
    assert machine(calls).fire("awaiting_signature", "sign", {"ready": set()}) is None
    assert calls == []


def test_a_before_callback_that_refuses_stops_the_transition() -> None:
    calls: list[str] = []
    with pytest.raises(ValueError):
        machine(calls, refuse=True).fire("awaiting_signature", "sign", {"ready": {TOGOLESE}})
    assert calls == [f"before {TOGOLESE}"]


def test_an_unknown_trigger_or_one_not_from_that_state_is_a_key_error() -> None:
    m = machine([])
    with pytest.raises(KeyError):
        m.fire("awaiting_signature", "no_such_trigger", {"ready": set()})
    with pytest.raises(KeyError):
        m.fire("draft", "sign", {"ready": {TOGOLESE}})

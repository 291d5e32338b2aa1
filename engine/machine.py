"""The state machine of one procedure version, on the `transitions` library.

One `transitions.Machine` is built per procedure version and reused for every case: a case's
stored state is set on a single carrier model, the trigger runs, and the carrier reports which
transition fired. No Machine per case, no case kept attached, auto transitions off. This is the
only module that imports `transitions`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from transitions import EventData, Machine, MachineError

from .model import Procedure, Transition

Guard = Callable[[Transition, Mapping[str, Any]], bool]


class _Carrier:
    """The one model the machine drives; holds a case's state only during a call."""

    state: str = ""
    fired: Transition | None = None


class StateMachine:
    """Decides where a trigger leads from a state, given a guard for each transition."""

    def __init__(self, procedure: Procedure, guard: Guard) -> None:
        self._carrier = _Carrier()
        self._lock = threading.Lock()
        self._guard = guard
        self._machine = Machine(
            model=self._carrier,
            states=list(procedure.states),
            initial=procedure.initial_state.id,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )
        for transition in procedure.transitions:
            self._machine.add_transition(
                trigger=transition.trigger,
                source=list(transition.sources),
                dest=transition.target,
                conditions=[self._condition(transition)],
                after=[self._recorder(transition)],
            )

    def _condition(self, transition: Transition) -> Callable[[EventData], bool]:
        def holds(event: EventData) -> bool:
            return self._guard(transition, event.kwargs["context"])
        return holds

    @staticmethod
    def _recorder(transition: Transition) -> Callable[[EventData], None]:
        def record(event: EventData) -> None:
            carrier: Any = event.model
            carrier.fired = transition
        return record

    def fire(self, state: str, trigger: str, context: Mapping[str, Any]) -> Transition | None:
        """The transition that `trigger` takes from `state`, or None when no guard holds.

        Raises KeyError when the trigger is not defined from that state at all.
        """
        event = self._machine.events.get(trigger)
        if event is None:
            raise KeyError(trigger)
        with self._lock:
            carrier = self._carrier
            carrier.state, carrier.fired = state, None
            try:
                event.trigger(carrier, context=context)
            except MachineError:
                raise KeyError(trigger) from None
            return carrier.fired

"""The state machine of one procedure version, on the `transitions` library.

One `transitions.Machine` is built per procedure version and reused for every case: a case's
stored state is set on a single carrier model, the trigger runs: the machine chooses the
transition among those whose guard holds, runs the engine's `before` callback (which may
refuse) and its `after` callback, whose result the carrier hands back. No Machine per case,
no case kept attached, auto transitions off. This is the only module that imports
`transitions`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from transitions import EventData, Machine, MachineError

from .model import Procedure, Transition

R = TypeVar("R")

Guard = Callable[[Transition, Mapping[str, Any]], bool]
#: Called by the machine with the transition it chose and the call's context.
Before = Callable[[Transition, Mapping[str, Any]], None]
After = Callable[[Transition, Mapping[str, Any]], R]


class _Carrier:
    """The one model the machine drives; holds a case's state only during a call."""

    state: str = ""
    result: Any = None


class StateMachine(Generic[R]):
    """Chooses where a trigger leads from a state: the first transition, in the procedure's
    order, whose guard holds. Runs the engine's `before` callback on it (which may refuse by
    raising) and returns what its `after` callback makes of it."""

    def __init__(self, procedure: Procedure, guard: Guard, before: Before,
                 after: After[R]) -> None:
        self._carrier = _Carrier()
        self._lock = threading.Lock()
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
                conditions=[_bind(guard, transition)],
                before=[_bind(before, transition)],
                after=[_keep(after, transition)],
            )

    def fire(self, state: str, trigger: str, context: Mapping[str, Any]) -> R | None:
        """What `after` made of the transition `trigger` takes from `state`, or None when no
        guard holds. Raises KeyError when the trigger is not defined from that state at all.
        """
        event = self._machine.events.get(trigger)
        if event is None:
            raise KeyError(trigger)
        with self._lock:
            carrier = self._carrier
            carrier.state, carrier.result = state, None
            try:
                event.trigger(carrier, context=context)
            except MachineError:
                raise KeyError(trigger) from None
            result: R | None = carrier.result
            carrier.result = None
            return result


def _bind(callback: Callable[[Transition, Mapping[str, Any]], Any], transition: Transition
          ) -> Callable[[EventData], Any]:
    def call(event: EventData) -> Any:
        return callback(transition, event.kwargs["context"])
    return call


def _keep(after: After[R], transition: Transition) -> Callable[[EventData], None]:
    def call(event: EventData) -> None:
        carrier: Any = event.model
        carrier.result = after(transition, event.kwargs["context"])
    return call

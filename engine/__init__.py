"""Guichet: a declarative workflow engine for public administrations.

The public API: load and check procedure files, and (see `engine.runtime`) run cases.

`Engine` and `load_procedures` are imported on first use (PEP 562 `__getattr__`): they bring
the database stack (SQLAlchemy, SQLModel, pydantic), which loading and checking a procedure
never needs, so `guichet validate` and the language server start without it.
"""

from typing import TYPE_CHECKING, Any

from .compiler import compile_source, lint, load_procedure, procedure_files
from .errors import (
    Blocked,
    ConcurrentUpdate,
    DatabaseUnavailable,
    Diagnostic,
    GuichetError,
    InvalidData,
    InvalidDatabaseURL,
    Location,
    NotAllowed,
    ProcedureError,
    UnknownCase,
    UnknownProcedure,
    UnknownTrigger,
)
from .model import Procedure
from .outbox import EVENTS
from .values import (
    Actor,
    AttachedDocument,
    Availability,
    Case,
    Event,
    HistoryEntry,
    PaymentTotal,
)

if TYPE_CHECKING:
    from .runtime import Engine, load_procedures

_LAZY = frozenset({"Engine", "load_procedures"})


def __getattr__(name: str) -> Any:
    """`Engine` and `load_procedures`, from `engine.runtime`, imported when first asked for."""
    if name in _LAZY:
        from . import runtime

        value = getattr(runtime, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


__all__ = [
    "EVENTS",
    "Actor",
    "AttachedDocument",
    "Availability",
    "Case",
    "Engine",
    "Event",
    "HistoryEntry",
    "PaymentTotal",
    "Blocked",
    "ConcurrentUpdate",
    "DatabaseUnavailable",
    "Diagnostic",
    "GuichetError",
    "InvalidData",
    "InvalidDatabaseURL",
    "Location",
    "NotAllowed",
    "Procedure",
    "ProcedureError",
    "UnknownCase",
    "UnknownProcedure",
    "UnknownTrigger",
    "compile_source",
    "lint",
    "load_procedures",
    "load_procedure",
    "procedure_files",
]

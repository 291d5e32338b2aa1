"""Guichet: a declarative workflow engine for public administrations.

The public API: load and check procedure files, and (see `engine.runtime`) run cases.
"""

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
from .runtime import Engine, load_procedures
from .values import (
    Actor,
    AttachedDocument,
    Availability,
    Case,
    Event,
    HistoryEntry,
    PaymentTotal,
)

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

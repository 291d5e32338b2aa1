"""Read-only values the engine hands to hosts: Actor, Case, HistoryEntry, Availability, Event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import Reason
from .limits import check_actor
from .model import SYSTEM_ROLE


@dataclass(frozen=True, init=False)
class Actor:
    """Who acts: an id and the roles they hold (e.g. Actor("agent-7", ["agent"])).

    The id (at most 128 characters) and each role (at most 64; at least one role) are
    non-empty texts without control characters, NUL or lone surrogates: anything else raises
    InvalidActor, both an InvalidData and a ValueError (see engine/limits.py).
    """

    id: str
    roles: frozenset[str]
    language: str = "fr"

    def __init__(self, id: str, roles: Iterable[str] | str, language: str = "fr") -> None:
        given = [roles] if isinstance(roles, str) else list(roles)
        check_actor(str(id), given)
        object.__setattr__(self, "id", str(id))
        object.__setattr__(self, "roles", frozenset(given))
        object.__setattr__(self, "language", language)


SYSTEM = Actor("system", [SYSTEM_ROLE])


@dataclass(frozen=True)
class AttachedDocument:
    document_id: str
    filename: str
    media_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Case:
    """A case as stored at `version`: never changes; ask the engine for a newer one."""

    reference: str
    procedure_id: str
    procedure_hash: str
    state: str
    outcome: str | None
    applicant_id: str
    data: Mapping[str, Any]
    fees_due: int
    fees_paid: int
    documents: tuple[AttachedDocument, ...]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    #: who opened the case for its applicant, while they have not claimed it (or None)
    opened_for_by: str | None = None
    #: the code a person opened for at the counter claims the case with: only in the Case
    #: `start(..., on_behalf=True)` returns (print it on the receipt); stored hashed
    claim_code: str | None = None
    #: the case this one follows up (`follow_ups:`, `opens:`), or None
    parent: str | None = None
    #: the follow-up cases opened from this one, oldest first (filled by Engine.case)
    follow_ups: tuple[str, ...] = ()

    @property
    def claimed(self) -> bool:
        """Whether the case has its applicant (false while opened for someone, unclaimed)."""
        return self.applicant_id != ""

    @property
    def closed(self) -> bool:
        return self.outcome is not None

    @property
    def fees_outstanding(self) -> int:
        return max(0, self.fees_due - self.fees_paid)


def frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded step: a transition, or @start, @attach, @pay."""

    sequence: int
    trigger: str
    from_state: str | None
    to_state: str
    actor_id: str
    actor_role: str
    payload: Mapping[str, Any]  # the step's own data: step input, attachment, payment...
    at: dt.datetime
    #: form fields the step changed: {field: {"before": value, "after": value}}
    changes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notifications: tuple[Mapping[str, Any], ...] = ()  # as rendered and sent
    issued: tuple[Mapping[str, Any], ...] = ()  # documents issued, as rendered
    for_party: str | None = None  # the party the actor acted for ("applicant" at a counter)


@dataclass(frozen=True)
class Availability:
    """A trigger of the case's current state: may this actor fire it now, and if not, why."""

    trigger: str
    label: str
    allowed: bool
    reasons: tuple[Reason, ...] = ()
    input: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """What a hook receives after commit. `name` is one of engine.EVENTS."""

    name: str
    reference: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PurgeResult:
    """A closed case whose personal data `Engine.purge` erased (with `dry_run`: would erase)
    because its retention has passed."""

    reference: str
    procedure_id: str
    closed_at: dt.datetime  # when it entered its final state
    retention: str  # of the procedure version it is pinned to, e.g. "5 years"
    fields: tuple[str, ...]  # the form fields whose values were erased
    file_names: int  # attached files whose name was erased
    files_deleted: tuple[str, ...]  # SHA-256 of the files deleted from the blob store
    files_kept: tuple[str, ...]  # SHA-256 of files another case (not purged) still has
    history_rows: int  # history rows whose personal data was erased
    outbox_rows: int  # outbox rows whose personal data was erased
    dry_run: bool = False


@dataclass(frozen=True)
class PaymentTotal:
    """The payments recorded with one method (`Engine.payment_statistics`): how many, and
    their sum in XOF."""

    count: int
    amount: int

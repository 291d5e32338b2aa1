"""The procedure versions an Engine runs: the current one of each procedure, and any version
a case is pinned to (compiled again from the snapshot stored with it)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from .compiler import canonical_json, compile_definition
from .errors import ProcedureError
from .model import Procedure
from .store import Store
from .workflow import Workflow


class Versions:
    """Compiled procedure versions by content hash, built once and shared by every case."""

    def __init__(self, store: Store, closures: frozenset[dt.date] = frozenset()) -> None:
        self._store = store
        self._closures = closures  # the deployment's closure days, for every Workflow
        self._by_hash: dict[str, Workflow] = {}
        self._current: dict[str, Workflow] = {}  # procedure id -> newest registered version

    def register(self, procedure: Procedure, now: dt.datetime) -> Workflow:
        """Make `procedure` the current version of its id (stored once per hash)."""
        workflow = self._by_hash.get(procedure.hash)
        if workflow is None:
            workflow = self._by_hash[procedure.hash] = Workflow(procedure, self._closures)
            self._store.save_procedure(procedure.hash, procedure.id, procedure.version,
                                       canonical_json(procedure.definition), now)
        self._current[procedure.id] = workflow
        return workflow

    def current(self, procedure_id: str) -> Workflow | None:
        """The version new cases of `procedure_id` start on."""
        return self._current.get(procedure_id)

    @property
    def procedures(self) -> Mapping[str, Procedure]:
        """The current version of every registered procedure, by id."""
        return {pid: w.procedure for pid, w in self._current.items()}

    def pinned(self, procedure_hash: str) -> Workflow:
        """The version a case is pinned to (compiled from its stored snapshot if needed)."""
        workflow = self._by_hash.get(procedure_hash)
        if workflow is None:
            definition = self._store.procedure_definition(procedure_hash)
            if definition is None:
                raise ProcedureError([])
            procedure = compile_definition(json.loads(definition))
            workflow = self._by_hash[procedure_hash] = Workflow(procedure, self._closures)
        return workflow

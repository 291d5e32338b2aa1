"""`guichet validate` must not import the database stack (issue 12, point 5).

SQLAlchemy, SQLModel and pydantic take most of the CLI's start-up time and validation never
uses them: `engine` exposes `Engine` and `load_procedures` lazily, and the CLI imports
`engine.runtime` only in the commands that run cases. Each check runs in a fresh interpreter,
since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import PROCEDURES, ROOT

HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "engine.store", "engine.runtime")

REPORT = f"""
import json, sys
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
"""


def _imported(code: str) -> list[str]:
    """The heavy modules imported by `code` run in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code + REPORT], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    imported: list[str] = json.loads(done.stdout.splitlines()[-1])
    return imported


def test_importing_the_engine_and_compiling_a_procedure_skips_the_database_stack() -> None:
    code = (f"import engine\n"
            f"procedure, diagnostics = engine.compile_source("
            f"open({str(PROCEDURES / 'passport.yaml')!r}, 'rb').read(), 'passport.yaml')\n"
            f"assert procedure is not None, diagnostics\n")
    assert _imported(code) == []


@pytest.mark.parametrize("output_format", ["text", "json", "sarif", "github"])
def test_validate_does_not_import_the_database_stack(output_format: str) -> None:
    code = (f"import cli\n"
            f"from click.testing import CliRunner\n"
            f"result = CliRunner().invoke(cli.main, "
            f"['validate', '--format', {output_format!r}, {str(PROCEDURES)!r}])\n"
            f"assert result.exit_code == 0, (result.output, result.exception)\n")
    assert _imported(code) == []


def test_the_public_api_still_offers_the_engine() -> None:
    code = ("from engine import Engine, load_procedures\n"
            "import engine, engine.runtime\n"
            "assert Engine is engine.runtime.Engine is engine.Engine\n"
            "assert load_procedures is engine.runtime.load_procedures\n"
            "assert {'Engine', 'load_procedures'} <= set(dir(engine))\n")
    assert set(_imported(code)) == set(HEAVY)  # asked for: imported, and nothing breaks

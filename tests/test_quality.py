"""The code stays ruff- and mypy-clean (strict on engine/), and its import contracts
(pyproject's [tool.importlinter]) are kept: CI fails otherwise."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_warnings_of_our_own_code_are_errors_and_third_party_ones_are_not() -> None:
    """pyproject's filterwarnings: our modules' warnings fail the suite, a dependency's
    deprecation does not (a newer dependency must not break a newcomer's install)."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("ours", DeprecationWarning, "engine/x.py", 1, module="engine.x")
    with warnings.catch_warnings(record=True) as caught:  # the filters in force stay
        warnings.warn_explicit("theirs", DeprecationWarning, "click/testing.py", 1,
                               module="click.testing")
    assert [str(w.message) for w in caught] == ["theirs"]


# --- boundaries: each outside library behind one module; engine <- renderers <- cli ----------

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
    "tool"]["importlinter"]["contracts"]
#: What cli.py may import of the libraries the contracts protect: it writes recorded sessions.
CLI_MAY_IMPORT = {"yaml"}


def _lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=where, capture_output=True,
                          text=True, timeout=600)


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_import_contract_fails(tmp_path: Path) -> None:
    """The contracts bite: a copy of the packages with a module crossing every boundary."""
    for package in ("engine", "renderers", "web", "lsp"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    crossings = ["sqlalchemy", "sqlmodel", "transitions", "jinja2", "jsonschema", "yaml",
                 "click", "cli", "renderers", "web", "fastapi", "starlette", "uvicorn",
                 "cryptography", "segno", "pygls", "lsprotocol", "lsp"]
    (tmp_path / "engine" / "_crossing.py").write_text(
        "".join(f"import {name}\n" for name in crossings), encoding="utf-8")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    for name in crossings:
        assert f"engine._crossing -> {name} " in result.stdout, name


def _imported(source: str) -> set[str]:
    """The top-level names of every module `source` imports (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def test_the_cli_imports_no_library_the_engine_keeps_behind_a_module() -> None:
    """import-linter takes no single-module root (cli.py), so the library contracts are
    checked on cli.py here: it goes through the engine's API (database errors included)."""
    protected = {name for contract in CONTRACTS if contract["type"] == "protected"
                 for name in contract["protected_modules"]}
    assert {"sqlalchemy", "transitions", "jinja2"} <= protected
    crossing = "import sqlalchemy.exc\ndef f():\n    from jinja2 import nodes\n"
    assert _imported(crossing) & protected == {"sqlalchemy", "jinja2"}  # the check bites
    cli = (ROOT / "cli.py").read_text(encoding="utf-8")
    assert _imported(cli) & (protected - CLI_MAY_IMPORT) == set()

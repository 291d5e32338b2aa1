"""The code stays ruff- and mypy-clean (strict on engine/): CI fails otherwise."""

from __future__ import annotations

import subprocess
import sys
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

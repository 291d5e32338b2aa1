"""examples/host.py: a host embedding the engine runs a passport case to `issued`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_host_example_runs_a_passport_to_issued(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "host.py")], cwd=tmp_path, env=environment,
        capture_output=True, encoding="utf-8", timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.rstrip("\n").splitlines()
    # the hooks printed what would be sent
    assert any(line.startswith("  [SMS -> +22890123456] Your passport application PAS-")
               for line in lines)
    assert any(line.startswith("  [document issued] Passport delivery record for PAS-")
               for line in lines)
    # ...and the output ends with the history, from @start to the final state `issued`
    start = next(i for i, line in enumerate(lines) if line.startswith("History of PAS-"))
    assert lines[start].endswith("(outcome: accepted):")
    history = [line.split() for line in lines[start + 1:]]
    assert [row[0] for row in history] == [str(n) for n in range(1, 17)]
    assert history[0][3:] == ["@start", "-", "→", "draft", "citizen-1", "(applicant)"]
    assert history[-1][3:] == ["hand_over", "ready_for_collection", "→", "issued", "agent-1",
                               "(agent)"]
    assert not list(tmp_path.iterdir())  # the database lived in its own temporary directory

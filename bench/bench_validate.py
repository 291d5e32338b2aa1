"""How fast `guichet validate` is, beside the floors it cannot beat, in one run.

    python bench/bench_validate.py [--runs 15] [--json]

Printed side by side (wall time, median of `--runs` runs, with min and max):
- `python -c pass`: the interpreter's own start-up, the floor of any CLI;
- `yaml.load(passport.yaml, Loader=yaml.CSafeLoader)` in a fresh interpreter (start-up, import
  of PyYAML and a parse by libyaml's C parser), the floor of a CLI that parses YAML;
- `guichet validate procedures/` in a fresh interpreter (the console script's own code path:
  `from cli import main; main()`), against the 300 ms target;
- in this process, `engine.compile_source(bytes, path)` (load and check) of each shipped
  procedure, median ms per procedure, against the 10 ms target, in three settings: a first
  check (`compiler.clear_caches()` before each call: nothing compiled or validated before), a
  re-check after a one-word edit of a state's label (what the language server does on every
  keystroke: compiled texts and unchanged definitions are remembered) and a re-check of the
  same bytes. One warm-up call comes first, so imports are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

CLI_TARGET_MS = 300.0
PROCEDURE_TARGET_MS = 10.0
PASSPORT = ROOT / "procedures" / "passport.yaml"

CSAFE_LOAD = (
    "import sys, yaml\n"
    "text = open(sys.argv[1], 'rb').read()\n"
    "yaml.load(text, Loader=yaml.CSafeLoader)\n"
)
MODES = {"first": "first check", "edited": "after an edit", "same": "unchanged"}
CLI = "import sys\nsys.argv[0] = 'guichet'\nfrom cli import main\nmain()\n"


def _wall(argv: list[str], runs: int) -> list[float]:
    """Wall times in ms of `runs` runs of a child process (after one unmeasured warm-up run)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    times = []
    for index in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        elapsed = (time.perf_counter() - start) * 1000
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
        if index:
            times.append(elapsed)
    return times


def _edited(raw: bytes, number: int) -> bytes:
    """`raw` with the French label of its first state changed (as an author's keystroke)."""
    start = raw.index(b"{fr: ", raw.index(b"\nstates:")) + len(b"{fr: ")
    return raw[:start] + f"{number} ".encode() + raw[start:]


def _in_process(runs: int) -> dict[str, dict[str, list[float]]]:
    """ms per call of `engine.compile_source` for each shipped procedure, in three settings:
    a first check (caches cleared), a re-check after a one-word edit (the language server's
    case) and a re-check of the same bytes."""
    from engine import compile_source, compiler, procedure_files

    def timed(raw: bytes, path: str) -> float:
        start = time.perf_counter()
        procedure, diagnostics = compile_source(raw, path)
        elapsed = (time.perf_counter() - start) * 1000
        if procedure is None:
            raise SystemExit(f"{path} does not compile: {[str(d) for d in diagnostics]}")
        return elapsed

    results: dict[str, dict[str, list[float]]] = {}
    for path in procedure_files([str(ROOT / "procedures")]):
        raw = Path(path).read_bytes()
        timed(raw, str(path))  # warm-up: imports and first-call caches are not counted
        clear = getattr(compiler, "clear_caches", lambda: None)  # code before the caches
        first = []
        for _ in range(runs):
            clear()
            first.append(timed(raw, str(path)))
        timed(raw, str(path))
        edited = [timed(_edited(raw, n), str(path)) for n in range(runs)]
        same = [timed(raw, str(path)) for _ in range(runs)]
        results[Path(path).name] = {"first": first, "edited": edited, "same": same}
    return results


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measure (default 15)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    import yaml

    rows: dict[str, dict[str, float]] = {
        "python -c pass": _summary(_wall([sys.executable, "-c", "pass"], args.runs)),
        "python: yaml.load(passport, CSafeLoader)": _summary(
            _wall([sys.executable, "-c", CSAFE_LOAD, str(PASSPORT)], args.runs)),
        "guichet validate procedures/": _summary(
            _wall([sys.executable, "-c", CLI, "validate", "procedures/"], args.runs)),
    }
    procedures = {name: {mode: _summary(times) for mode, times in modes.items()}
                  for name, modes in _in_process(args.runs).items()}
    parse_times = []
    text = PASSPORT.read_bytes()
    for _ in range(args.runs):
        start = time.perf_counter()
        yaml.load(text, Loader=yaml.CSafeLoader)
        parse_times.append((time.perf_counter() - start) * 1000)
    cli_ms = rows["guichet validate procedures/"]["median_ms"]
    per_mode = {mode: statistics.median(p[mode]["median_ms"] for p in procedures.values())
                for mode in ("first", "edited", "same")}
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "runs": args.runs,
        "processes": rows,
        "in_process": procedures,
        "in_process_csafe_load_passport": _summary(parse_times),
        "cli_ms": cli_ms,
        "cli_target_ms": CLI_TARGET_MS,
        "cli_ratio": cli_ms / CLI_TARGET_MS,
        "per_procedure_ms": per_mode,
        "per_procedure_target_ms": PROCEDURE_TARGET_MS,
        "per_procedure_ratio": {m: v / PROCEDURE_TARGET_MS for m, v in per_mode.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    _print(result, rows, procedures)


def _print(result: dict[str, Any], rows: dict[str, dict[str, float]],
           procedures: dict[str, dict[str, dict[str, float]]]) -> None:
    import yaml

    def line(name: str, row: dict[str, float]) -> str:
        return f"{name:<44} {row['median_ms']:8.1f}  ({row['min_ms']:.1f}-{row['max_ms']:.1f})"

    print(f"Python {result['python']}, PyYAML {yaml.__version__} "
          f"(libyaml: {'yes' if result['libyaml'] else 'no'}), {result['runs']} runs each; "
          "ms: median (min-max)")
    print("\nfresh process, wall time")
    for name, row in rows.items():
        print("  " + line(name, row))
    print("\nin process, engine.compile_source (load + check) per procedure")
    for name, modes in procedures.items():
        for mode, row in modes.items():
            print("  " + line(f"{name}, {MODES[mode]}", row))
    print("  " + line("(floor) yaml CSafeLoader, passport.yaml",
                      result["in_process_csafe_load_passport"]))
    print("\ntargets")
    cli_ms = result["cli_ms"]
    print(f"  CLI                      {cli_ms:8.1f} ms / {CLI_TARGET_MS:.0f} ms = "
          f"{result['cli_ratio']:.2f}x  {'ok' if cli_ms <= CLI_TARGET_MS else 'OVER'}")
    for mode, value in result["per_procedure_ms"].items():
        print(f"  per procedure, {mode:<9} {value:8.1f} ms / {PROCEDURE_TARGET_MS:.0f} ms = "
              f"{value / PROCEDURE_TARGET_MS:.2f}x  "
              f"{'ok' if value <= PROCEDURE_TARGET_MS else 'OVER'}")

if __name__ == "__main__":
    main()

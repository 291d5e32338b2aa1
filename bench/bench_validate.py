"""How fast `guichet validate` is, beside the floors it cannot beat, in one run.

    python bench/bench_validate.py [--runs 15] [--json]

Printed side by side (wall time, median of `--runs` runs, with min and max):
- `python -c pass`: the interpreter's own start-up, the floor of any CLI;
- `yaml.load(passport.yaml, Loader=yaml.CSafeLoader)` in a fresh interpreter (start-up, import
  of PyYAML and a parse by libyaml's C parser), the floor of a CLI that parses YAML;
- `guichet validate procedures/` in a fresh interpreter (the console script's own code path:
  `from cli import main; main()`), against the 300 ms target;
- in this process, `engine.compile_source(bytes, path)` (load and check) of each shipped
  procedure, median ms per procedure, against the 10 ms target (after one warm-up call, so
  imports and first-call caches are not counted).
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


def _in_process(runs: int) -> dict[str, list[float]]:
    """ms per call of `engine.compile_source` for each shipped procedure."""
    from engine import compile_source, procedure_files

    results = {}
    for path in procedure_files([str(ROOT / "procedures")]):
        raw = Path(path).read_bytes()
        procedure, diagnostics = compile_source(raw, str(path))  # warm-up
        if procedure is None:
            raise SystemExit(f"{path} does not compile: {[str(d) for d in diagnostics]}")
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            compile_source(raw, str(path))
            times.append((time.perf_counter() - start) * 1000)
        results[Path(path).name] = times
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
    procedures = {name: _summary(times) for name, times in _in_process(args.runs).items()}
    parse_times = []
    text = PASSPORT.read_bytes()
    for _ in range(args.runs):
        start = time.perf_counter()
        yaml.load(text, Loader=yaml.CSafeLoader)
        parse_times.append((time.perf_counter() - start) * 1000)
    cli_ms = rows["guichet validate procedures/"]["median_ms"]
    per_procedure = statistics.median(p["median_ms"] for p in procedures.values())
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
        "per_procedure_ms": per_procedure,
        "per_procedure_target_ms": PROCEDURE_TARGET_MS,
        "per_procedure_ratio": per_procedure / PROCEDURE_TARGET_MS,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Python {result['python']}, PyYAML {yaml.__version__} "
          f"(libyaml: {'yes' if result['libyaml'] else 'no'}), {args.runs} runs each; "
          "ms: median (min-max)")
    print("\nfresh process, wall time")
    for name, row in rows.items():
        print(f"  {name:<44} {row['median_ms']:8.1f}  ({row['min_ms']:.1f}-{row['max_ms']:.1f})")
    print("\nin process, engine.compile_source (load + check) per procedure")
    for name, row in procedures.items():
        print(f"  {name:<44} {row['median_ms']:8.1f}  ({row['min_ms']:.1f}-{row['max_ms']:.1f})")
    row = result["in_process_csafe_load_passport"]
    print(f"  {'(floor) yaml CSafeLoader, passport.yaml':<44} {row['median_ms']:8.1f}  "
          f"({row['min_ms']:.1f}-{row['max_ms']:.1f})")
    print("\ntargets")
    print(f"  CLI            {cli_ms:8.1f} ms / {CLI_TARGET_MS:.0f} ms = "
          f"{result['cli_ratio']:.2f}x  {'ok' if cli_ms <= CLI_TARGET_MS else 'OVER'}")
    print(f"  per procedure  {per_procedure:8.1f} ms / {PROCEDURE_TARGET_MS:.0f} ms = "
          f"{result['per_procedure_ratio']:.2f}x  "
          f"{'ok' if per_procedure <= PROCEDURE_TARGET_MS else 'OVER'}")


if __name__ == "__main__":
    main()

"""A ~400-byte YAML alias bomb ("billion laughs", 9 levels): Guichet against a naive loader.

    python bench/bench_alias_bomb.py [--timeout 20] [--memory-gb 2] [--json]

Guichet: `engine.compile_source(bytes, "bomb.yaml")`, in this process: elapsed time (first call
and best of 20) and peak Python allocation (tracemalloc), plus the diagnostic it answers with.

Naive: `yaml.safe_load` then `jsonschema.validate` against `engine.schema.schema()`. It runs in
a child process with a wall-clock timeout and an address-space limit (RLIMIT_AS), so it cannot
take the machine down; the peak RSS of the child is read with getrusage(RUSAGE_CHILDREN).

Two placements of the same bomb are measured:
- "legal_basis": the anchors are items of `legal_basis`, a list the schema checks item by item
  (each item must be a text), so the validator walks - and repr()s in its error messages - the
  9**9 = 387,420,489 strings the aliases stand for;
- "top-level": the textbook form, anchors as top-level keys. The schema refuses unknown top-level
  keys without looking inside them, so the naive validation happens to stay cheap here; any later
  walk of the data (hashing, json.dumps, rendering) would not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

LEVELS = 9
EXIT_MEMORY = 3


def bomb(placement: str, levels: int = LEVELS) -> bytes:
    """The billion-laughs document: level 1 holds 9 strings, each next level 9 aliases."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    rows = ['["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += ["[" + ",".join([f"*{names[k - 1]}"] * 9) + "]" for k in range(1, levels)]
    if placement == "top-level":
        lines = [f"{name}: &{name} {row}" for name, row in zip(names, rows, strict=True)]
    else:
        lines = ["id: bomb", 'version: "1"', "title: {fr: Bombe, en: Bomb}", "legal_basis:"]
        lines += [f"- &{name} {row}" for name, row in zip(names, rows, strict=True)]
    return ("\n".join(lines) + "\n").encode()


# --- Guichet ------------------------------------------------------------------------------------

def run_guichet(raw: bytes, repeats: int = 20) -> dict[str, Any]:
    from engine import compile_source

    t0 = time.perf_counter()
    procedure, diagnostics = compile_source(raw, "bomb.yaml")
    first = time.perf_counter() - t0
    best = first
    for _ in range(repeats):
        t0 = time.perf_counter()
        compile_source(raw, "bomb.yaml")
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    compile_source(raw, "bomb.yaml")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "refused": procedure is None,
        "first_s": first, "best_s": best, "tracemalloc_peak_bytes": peak,
        "diagnostics": [f"{d.location.line}:{d.location.column}: {d.severity}: {d.message} "
                        f"[{d.rule}]" for d in diagnostics],
    }


# --- the naive approach, in a child process -----------------------------------------------------

def naive_child(path: str, memory_bytes: int) -> int:
    """Child: load and validate under an address-space limit; report on stdout, line by line."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        import jsonschema
        import yaml

        from engine.schema import schema

        raw = Path(path).read_bytes()
        t0 = time.perf_counter()
        data = yaml.safe_load(raw)
        print(json.dumps({"phase": "loaded", "s": time.perf_counter() - t0}), flush=True)
        try:
            jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)
            verdict = "valid"
        except jsonschema.ValidationError as exc:
            verdict = f"invalid: {exc.message[:120]}"
        print(json.dumps({"phase": "validated", "s": time.perf_counter() - t0,
                          "verdict": verdict, "maxrss_kib": _maxrss_kib()}), flush=True)
    except MemoryError:
        os.write(1, b'{"phase": "memory", "maxrss_kib": %d}\n' % _maxrss_kib())
        return EXIT_MEMORY
    return 0


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_naive(raw: bytes, timeout: float, memory_bytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="guichet-bomb-") as tmp:
        path = Path(tmp) / "bomb.yaml"
        path.write_bytes(raw)
        command = [sys.executable, __file__, "--naive-child", str(path),
                   "--memory-bytes", str(memory_bytes)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, cwd=ROOT)
            stdout, stderr, code = done.stdout, done.stderr, done.returncode
            timed_out = False
        except subprocess.TimeoutExpired as exc:  # run() has killed and reaped the child
            stdout, stderr, code = exc.stdout or b"", exc.stderr or b"", None
            timed_out = True
        elapsed = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    phases = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    last = phases[-1] if phases else {}
    if timed_out:
        outcome = f"did not finish in {timeout:g} s (killed)"
    elif code == EXIT_MEMORY or last.get("phase") == "memory" or b"MemoryError" in stderr:
        outcome = f"hit the memory limit ({memory_bytes / 2**30:g} GiB address space)"
    elif code == 0 and last.get("phase") == "validated":
        outcome = f"finished: {last['verdict']}"
    else:
        outcome = f"failed (exit {code}): {stderr.decode(errors='replace')[-300:]}"
    loaded = next((p["s"] for p in phases if p["phase"] == "loaded"), None)
    validated = next((p["s"] for p in phases if p["phase"] == "validated"), None)
    # the child reports its own peak when it can; a killed child's peak is only visible as
    # the largest child so far (RUSAGE_CHILDREN), hence the small placement is run first
    if "maxrss_kib" in last:
        peak: int | None = last["maxrss_kib"] * 1024
    else:
        peak = peak_kib * 1024 if peak_kib > before else None
    return {"outcome": outcome, "elapsed_s": elapsed, "safe_load_s": loaded,
            "load_and_validate_s": validated, "peak_rss_bytes": peak}


# --- report -------------------------------------------------------------------------------------

def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=20.0, help="naive run limit, seconds")
    parser.add_argument("--memory-gb", type=float, default=2.0,
                        help="naive run address-space limit (RLIMIT_AS), GiB")
    parser.add_argument("--placement", choices=("legal_basis", "top-level", "both"),
                        default="both")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--naive-child", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--memory-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_child:
        return naive_child(args.naive_child, args.memory_bytes)

    memory_bytes = int(args.memory_gb * 2**30)
    placements = ["top-level", "legal_basis"] if args.placement == "both" else [args.placement]
    results = []
    for placement in placements:
        raw = bomb(placement)
        results.append({"placement": placement, "bytes": len(raw), "levels": LEVELS,
                        "expands_to": 9**LEVELS, "guichet": run_guichet(raw),
                        "naive": run_naive(raw, args.timeout, memory_bytes)})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        g, n = r["guichet"], r["naive"]
        print(f"alias bomb, placement {r['placement']}: {r['bytes']} bytes, {r['levels']} levels, "
              f"{r['expands_to']:,} strings once expanded")
        print(f"  Guichet compile_source: {'refused' if g['refused'] else 'ACCEPTED'} in "
              f"{g['first_s'] * 1e3:.2f} ms (first call), {g['best_s'] * 1e3:.2f} ms (best of 20);"
              f" tracemalloc peak {mib(g['tracemalloc_peak_bytes'])}")
        for line in g["diagnostics"]:
            print(f"    bomb.yaml:{line}")
        peak = "n/a" if n["peak_rss_bytes"] is None else mib(n["peak_rss_bytes"])
        timing = [f"{n['elapsed_s']:.2f} s wall for the child process"]
        if n["safe_load_s"] is not None:
            timing.append(f"yaml.safe_load {n['safe_load_s'] * 1e3:.1f} ms")
        if n["load_and_validate_s"] is not None:
            timing.append(f"load + validate {n['load_and_validate_s']:.3f} s")
        print(f"  naive safe_load + jsonschema: {n['outcome']}")
        print(f"    {', '.join(timing)}; peak RSS {peak}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

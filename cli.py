"""The `guichet` command line: validate procedures, print the schema, run cases.

Exit status: 0 success, 1 problems found (or a refused operation), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine import compiler
from engine.schema import schema_text

DEFAULT_PROCEDURES = "procedures/"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guichet")
def main() -> None:
    """Guichet: one YAML file per administrative procedure."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text: one problem per line; json: an array for CI.")
def validate(paths: tuple[str, ...], output_format: str) -> None:
    """Check procedure files (files or directories; default procedures/)."""
    if not paths:
        if not Path(DEFAULT_PROCEDURES).is_dir():
            raise click.UsageError(f"no PATH given and no {DEFAULT_PROCEDURES} directory here")
        paths = (DEFAULT_PROCEDURES,)
    files = list(compiler.procedure_files(paths))
    diagnostics = compiler.lint(files)
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    if output_format == "json":
        click.echo(json.dumps([d.as_json() for d in diagnostics], indent=2, ensure_ascii=False))
    else:
        for diagnostic in diagnostics:
            click.echo(str(diagnostic))
        summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
        click.echo(summary, err=True)
    sys.exit(1 if errors else 0)


@main.command()
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the procedure format."""
    click.echo(schema_text(), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()

"""The Typer applications every command module registers with."""

from __future__ import annotations

import typer

app = typer.Typer(help="High-throughput screening of crystals with hybrid composition + graph models.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
bench_app = typer.Typer(help="Benchmarks: speed and accuracy tables, measured in this run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

"""How every command stops on bad input: one `error:` line on stderr and exit status 2, never a traceback.

A top-level module (like `configcheck`) so that the command lines of every layer share it."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Print `error: MESSAGE` on stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)

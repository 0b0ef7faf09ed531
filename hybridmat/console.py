"""The terminal every command prints to, the command line as typed, and the project's user-error type.

Everything a user can get wrong (a job file, a source string, an address, a mismatched output directory, missing
data) raises :class:`UserError` (or a subclass): the console script prints it in one line and exits 2. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import shlex
import sys

from rich.console import Console

console = Console()
error_console = Console(stderr=True)


class UserError(ValueError):
    """Bad input from the user: reported in one line, exit status 2 (``HYBRIDMAT_DEBUG=1`` for the traceback)."""


def invocation() -> str:
    """The command line as typed, for tables that say which command produced them."""
    return shlex.join(["hybridmat", *sys.argv[1:]])


def report_user_error(error: BaseException) -> None:
    """Print ``error`` as the one-line message of a failed command."""
    error_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)

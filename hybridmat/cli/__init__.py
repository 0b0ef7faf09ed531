"""The ``hybridmat`` command line: one entry point for every stage of the workflow.

Thin by rule: a command parses its options, calls a workflow and prints. It imports neither torch nor Ray at
module level, so ``hybridmat --help`` and the one-line errors stay fast.
"""

from __future__ import annotations

import os
import sys

from hybridmat.cli import benchmarks, modeling, stages  # noqa: F401  (each module registers its commands)
from hybridmat.cli.apps import app
from hybridmat.console import UserError, report_user_error

__all__ = ["app", "main"]


def main() -> None:
    """The console script: a :class:`~hybridmat.console.UserError` or a missing/unwritable user path prints one
    line and exits 2; anything else is a bug and keeps its traceback. ``HYBRIDMAT_DEBUG=1`` always shows it."""
    try:
        app()
    except (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        if os.environ.get("HYBRIDMAT_DEBUG"):
            raise
        report_user_error(error)
        sys.exit(2)

"""The ``hybridmat`` command line: one entry point for every stage of the workflow.

Thin by rule: a command parses its options, calls a workflow and prints. It imports neither torch nor Ray at
module level, so ``hybridmat --help`` and the one-line errors stay fast.
"""

from __future__ import annotations

import errno
import os
import sys

from hybridmat.cli import benchmarks, modeling, stages  # noqa: F401  (each module registers its commands)
from hybridmat.cli.apps import app
from hybridmat.console import UserError, report_user_error

__all__ = ["app", "main"]


#: ``OSError`` numbers that describe the user's paths or disk, not a bug: read-only file system, disk full,
#: quota exceeded, name too long, too many symbolic links.
USER_PATH_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP})
USER_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix (one line, exit 2) rather than a bug (traceback)."""
    return isinstance(error, (UserError, *USER_PATH_ERRORS)) or (
        isinstance(error, OSError) and error.errno in USER_PATH_ERRNOS)


def main() -> None:
    """The console script: a :class:`~hybridmat.console.UserError` or a missing, unwritable or misplaced user
    path (an output that is a file, a read-only or full disk) prints one line and exits 2; anything else is a
    bug and keeps its traceback. ``HYBRIDMAT_DEBUG=1`` always shows it."""
    try:
        app()
    except OSError as error:  # UserError is a ValueError, handled below
        if os.environ.get("HYBRIDMAT_DEBUG") or not is_user_error(error):
            raise
        report_user_error(error)
        sys.exit(2)
    except UserError as error:
        if os.environ.get("HYBRIDMAT_DEBUG"):
            raise
        report_user_error(error)
        sys.exit(2)

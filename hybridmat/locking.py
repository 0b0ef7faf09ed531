"""One writer per output directory: an advisory lock file that names its owner (pid, host, command).

Every stage that writes a directory (a feature store, a screen's prediction shards, a relaxation's output)
holds :func:`directory_lock` for the whole run, so a second run on the same directory, ``--overwrite``
included, is refused instead of deleting shards under the first one's feet. The lock is ``flock(2)`` on
``DIR/.hybridmat.lock``: the kernel releases it when its process ends, however it ends, so a lock left by
a crashed or killed run is taken over by the next one (with a note naming the dead owner). The file's
content is only there to name the owner in the refusal. ``flock`` on NFS is only as good as the
server's lock manager; two hosts writing one directory on a file system without one are not detected.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from hybridmat.console import UserError, error_console

LOCK_NAME = ".hybridmat.lock"
P = ParamSpec("P")
R = TypeVar("R")

_held: dict[Path, int] = {}  # directories this process holds, with how many nested holders
_held_guard = threading.Lock()


class DirectoryLockedError(UserError):
    """Another live process is writing the directory."""


def _owner_text(owner: dict[str, object]) -> str:
    return (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} ({owner.get('purpose', '?')}, "
            f"since {owner.get('started', '?')})")


def read_owner(directory: Path) -> dict[str, object] | None:
    """The owner recorded in ``directory``'s lock file (``None`` if there is none or it was released)."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None
    return owner if isinstance(owner, dict) else None


@contextmanager
def directory_lock(directory: Path | str, purpose: str) -> Iterator[Path]:
    """Hold the write lock of ``directory`` (created if missing) for the ``with`` block.

    Re-entrant within a process (a command may take it around a workflow that takes it again); another
    process holding it raises :class:`DirectoryLockedError` naming that process. Yields the lock file.
    """
    directory = Path(directory).resolve()
    path = directory / LOCK_NAME
    with _held_guard:
        nested = directory in _held
        if nested:
            _held[directory] += 1
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[directory] -= 1
        return
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        owner = read_owner(directory) or {}
        raise DirectoryLockedError(
            f"{directory} is being written by {_owner_text(owner)}; wait for that run to finish (or stop it), "
            "or choose another output directory") from None
    try:
        stale = read_owner(directory)
        if stale is not None:
            error_console.print(f"note: taking over the lock of {directory} from {_owner_text(stale)}, "
                                "which is no longer running", highlight=False, soft_wrap=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                 "command": " ".join(sys.argv), "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(owner).encode(), 0)
        with _held_guard:
            _held[directory] = 1
        try:
            yield path
        finally:
            with _held_guard:
                del _held[directory]
            os.ftruncate(descriptor, 0)  # empty = released; the file stays, so no two holders race on inodes
    finally:
        os.close(descriptor)  # closing the last descriptor releases the flock


def holds_directory_lock(argument: str, purpose: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the call holds :func:`directory_lock` on its parameter ``argument`` (a directory)."""
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            with directory_lock(signature.bind(*args, **kwargs).arguments[argument], purpose):
                return function(*args, **kwargs)
        return locked
    return decorate

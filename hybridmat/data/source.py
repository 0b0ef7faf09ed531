"""The interface every structure source implements."""

from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from hybridmat.data.records import SourceItem


class Source(ABC):
    """An ordered, re-iterable stream of :class:`StructureRecord` / :class:`RecordError` items.

    Iterating twice yields the same items in the same order, which is what lets the feature store
    resume a run shard by shard.
    """

    #: Canonical names of the targets this source provides (may be empty, e.g. for candidates).
    targets: tuple[str, ...] = ()

    @abstractmethod
    def __iter__(self) -> Iterator[SourceItem]:
        """Yield one item per input row, in a deterministic order."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable hex digest of the input content and options (changes when the input changes)."""

    def count(self) -> int | None:
        """Number of items, when known without parsing structures (lets a rerun skip finished shards)."""
        return None

    def iter_range(self, start: int, stop: int) -> Iterator[SourceItem]:
        """Items ``start`` to ``stop - 1`` in iteration order; sources that can seek override this."""
        return itertools.islice(iter(self), start, stop)

    def describe(self) -> str:
        """A short human-readable description for logs and manifests."""
        return type(self).__name__


def hash_file(path: Path, *extra: str) -> str:
    """SHA-256 of a file's bytes followed by ``extra`` strings (the options that select rows)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()


def hash_strings(*items: str) -> str:
    """SHA-256 of a sequence of strings, for sources defined by their options alone."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()

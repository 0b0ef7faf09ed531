"""A directory of CIF/POSCAR files with an ``id_prop.csv`` (the CGCNN/ALIGNN convention).

``id_prop.csv`` has no header; each line is ``<id or file name>,<target>[,<target>...]``. The structure
of a line is the first column as a file name when that file exists in the directory, else the first of
``<id>.cif``, ``<id>.vasp``, ``<id>.poscar``, ``POSCAR-<id>``, ``<id>`` (POSCAR) that exists.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source

ID_PROP = "id_prop.csv"
#: File name patterns tried, in order, for an id that is not itself a file name.
CANDIDATE_NAMES = ("{id}.cif", "{id}.vasp", "{id}.poscar", "POSCAR-{id}", "{id}")
_STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
_MAX_REASON = 240


def short_message(exc: BaseException | str) -> str:
    """One line of at most ~240 characters describing ``exc``, for a :class:`RecordError` reason."""
    if isinstance(exc, str | ValueError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def structure_from_cif(text: str) -> Structure:
    """The first structure of CIF ``text``, as written (not reduced to the primitive cell).

    Raises ``ValueError("CIF could not be parsed: ...")`` carrying pymatgen's own warnings, which say
    which key or block was wrong. A CIF that parses with warnings is accepted silently.
    """
    parser = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser.from_str(text)
            return parser.parse_structures(primitive=False, on_error="ignore")[0]
        except Exception as exc:  # pymatgen raises many types on malformed CIFs
            details = [line for w in (parser.warnings if parser else []) for line in w.splitlines()]
            reason = "; ".join(dict.fromkeys([*details, short_message(exc)]))
            raise ValueError(f"CIF could not be parsed: {short_message(reason)}") from exc


def read_structure_file(path: Path) -> Structure:
    """Read a CIF (``.cif``), POSCAR (``.vasp``, ``.poscar``, ``POSCAR*``, ``CONTCAR*``, no suffix) or any
    other format pymatgen recognises from its file name. Raises ``ValueError`` with a short reason."""
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ValueError("file is empty")
    suffix = path.suffix.lower()
    if suffix == ".cif":
        return structure_from_cif(text)
    if suffix in (".vasp", ".poscar", "") or path.name.upper().startswith(("POSCAR", "CONTCAR")):
        fmt = "poscar"
    else:
        return Structure.from_file(path)
    try:
        return Structure.from_str(text, fmt=fmt)
    except Exception as exc:  # malformed POSCARs raise IndexError/ValueError/...
        raise ValueError(f"POSCAR could not be parsed: {short_message(exc)}") from exc


def parse_target(name: str, value: object) -> float:
    """``value`` as a float; empty/None become NaN (an unknown label); raise ``ValueError`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"target '{name}' is not a number: {value!r}") from None


class CifDirectorySource(Source):
    """Structures from a CGCNN/ALIGNN-style directory: structure files plus ``id_prop.csv``.

    ``target_names`` names the target columns (e.g. ``("e_form", "band_gap")``); by default they are
    ``("target",)`` for one column, else ``("target_0", "target_1", ...)``. Ids are the first column,
    without a ``.cif``/``.vasp``/``.poscar`` suffix when it names a file; an empty first column becomes
    ``row-<index>``. Raises ``FileNotFoundError`` when the directory or ``id_prop.csv`` is missing and
    ``ValueError`` when ``id_prop.csv`` has no rows.
    """

    def __init__(self, path: str | os.PathLike[str], target_names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.id_prop = self.path / ID_PROP
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path} is not a directory")
        if not self.id_prop.is_file():
            raise FileNotFoundError(
                f"{self.id_prop} not found: a CIF directory needs an id_prop.csv "
                "(no header; id or file name, then one column per target)"
            )
        rows = self._rows()
        if not rows:
            raise ValueError(f"{self.id_prop} has no rows")
        if target_names is None:
            n_targets = len(rows[0]) - 1
            target_names = ("target",) if n_targets == 1 else tuple(f"target_{i}" for i in range(n_targets))
        self.targets = tuple(target_names)

    def _rows(self) -> list[list[str]]:
        """The non-blank lines of ``id_prop.csv``, split into stripped cells."""
        text = self.id_prop.read_text(encoding="utf-8-sig")
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
        return [row for row in rows if any(row)]

    def _files(self) -> dict[str, os.stat_result]:
        """Name -> stat of every regular file in the directory (one listing, cheap for 40k files)."""
        with os.scandir(self.path) as entries:
            return {
                entry.name: entry.stat() for entry in entries if entry.is_file() and entry.name != ID_PROP
            }

    @staticmethod
    def _resolve(key: str, files: dict[str, os.stat_result]) -> tuple[str, str | None]:
        """The record id and the structure file name for first column ``key`` (``None`` if absent)."""
        if key in files:
            return (Path(key).stem if Path(key).suffix.lower() in _STRUCTURE_SUFFIXES else key), key
        for pattern in CANDIDATE_NAMES:
            name = pattern.format(id=key)
            if name in files:
                return key, name
        return key, None

    def __iter__(self) -> Iterator[SourceItem]:
        files = self._files()
        for index, row in enumerate(self._rows()):
            yield self._read_row(index, row, files)

    def _read_row(self, index: int, row: list[str], files: dict[str, os.stat_result]) -> SourceItem:
        if not row[0]:
            return RecordError(f"row-{index}", "read", f"row {index} of {ID_PROP} has no id")
        record_id, name = self._resolve(row[0], files)
        values = row[1:]
        if len(values) != len(self.targets):
            return RecordError(
                record_id,
                "read",
                f"expected {len(self.targets)} target column(s) "
                f"{list(self.targets)} in {ID_PROP}, found {len(values)}",
            )
        try:
            targets = {
                target: parse_target(target, value)
                for target, value in zip(self.targets, values, strict=True)
            }
        except ValueError as exc:
            hint = f" ({ID_PROP} has no header row)" if index == 0 else ""
            return RecordError(record_id, "read", f"{exc}{hint}")
        if name is None:
            tried = ", ".join(pattern.format(id=row[0]) for pattern in CANDIDATE_NAMES)
            return RecordError(record_id, "read", f"structure file not found in {self.path} (tried {tried})")
        try:
            structure = read_structure_file(self.path / name)
        except Exception as exc:  # any parser failure becomes this row's error, never the stream's
            return RecordError(record_id, "read", f"{name}: {short_message(exc)}")
        return StructureRecord(record_id, structure, targets, provenance=str(self.path / name))

    def fingerprint(self) -> str:
        """SHA-256 of ``id_prop.csv``, the target names and the name, size and mtime of every structure
        file it refers to (no file is read, so this is cheap for 40k files)."""
        digest = hashlib.sha256(self.id_prop.read_bytes())
        digest.update(("\0".join(self.targets) + "\n").encode())
        files = self._files()
        for row in self._rows():
            name = self._resolve(row[0], files)[1] if row[0] else None
            stat = files.get(name) if name else None
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode() if stat else b"-\n")
        return digest.hexdigest()

    def describe(self) -> str:
        return f"CifDirectorySource({self.path}, targets={list(self.targets)})"

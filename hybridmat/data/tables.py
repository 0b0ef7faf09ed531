"""Parquet and JSON-lines files with one structure per row.

The structure cell holds pymatgen ``Structure.as_dict()`` (a JSON string or a nested object) or CIF text,
detected per row. Parquet is streamed in record batches, reading only the id, structure and target
columns, so a 36k-row file never has more than one batch of raw cells and one parsed structure in memory.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pymatgen.core import Element, Lattice, Structure

from hybridmat.data.cif_dir import parse_target, short_message, structure_from_cif
from hybridmat.data.records import TARGET_ALIASES, RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source, hash_file, hash_strings

PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".json")
BATCH_ROWS = 1024

_ELEMENTS = frozenset(element.symbol for element in Element)
_PLAIN = (int, float, str, bool, type(None))
#: A table row before parsing: its 0-based index, its id and its cells.
_Row = tuple[int, str, Mapping[str, Any]]


def structure_from_dict(data: Mapping[str, Any]) -> Structure:
    """``Structure.from_dict(data)``, about 1.7x faster for the common case.

    ``Structure.from_dict`` builds every site twice (once from the dict, once more in ``from_sites``).
    When every site is plain (element symbols with occupancies, a label, scalar properties with the same
    keys on every site) this builds the structure once, with an identical result (lattice, pbc, species,
    fractional coordinates, labels, site and structure properties, charge). Anything else (oxidation
    states, dummy species, missing labels, nested properties) goes through ``Structure.from_dict``.
    """
    lattice, sites = data.get("lattice"), data.get("sites")
    if not isinstance(lattice, Mapping) or "matrix" not in lattice or not sites:
        return Structure.from_dict(data)
    keys = set(sites[0].get("properties") or ())
    species, coords, labels = [], [], []
    site_properties: dict[str, list[Any]] = {key: [] for key in keys}
    for site in sites:
        occupancy = {}
        for entry in site["species"]:
            if entry.keys() != {"element", "occu"} or entry["element"] not in _ELEMENTS:
                return Structure.from_dict(data)
            occupancy[entry["element"]] = entry["occu"]
        properties = site.get("properties") or {}
        if site.get("label") is None or properties.keys() != keys:
            return Structure.from_dict(data)
        for key, value in properties.items():
            if not isinstance(value, _PLAIN):
                return Structure.from_dict(data)
            site_properties[key].append(value)
        species.append(occupancy)
        coords.append(site["abc"])
        labels.append(site["label"])
    return Structure(
        Lattice(lattice["matrix"], pbc=tuple(lattice.get("pbc", (True, True, True)))),
        species,
        coords,
        charge=data.get("charge"),
        site_properties=site_properties or None,
        labels=labels,
        properties=data.get("properties"),
    )


def parse_structure_cell(value: object) -> Structure:
    """A structure from a table cell: ``as_dict()`` as a dict or JSON string, or CIF text.

    Raises ``ValueError`` with a short reason ("structure column is empty", "CIF could not be parsed:
    ...", ...).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("structure column is empty")
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            return structure_from_cif(text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"structure is neither CIF nor valid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"structure cell holds a {type(value).__name__}, not a Structure dict or CIF text")
    try:
        return structure_from_dict(value)
    except KeyError as exc:
        raise ValueError(f"structure dict has no {exc} key") from None


def default_target_columns(columns: Sequence[str]) -> dict[str, str]:
    """Canonical target name -> the first of its ``TARGET_ALIASES`` that is one of ``columns``."""
    present = set(columns)
    mapping = {}
    for name, aliases in TARGET_ALIASES.items():
        column = next((alias for alias in aliases if alias in present), None)
        if column is not None:
            mapping[name] = column
    return mapping


class TableSource(Source):
    """Structures from a ``.parquet`` or JSON-lines (``.jsonl``, ``.json``: one object per line) file.

    ``targets`` maps canonical names to columns (default: :func:`default_target_columns`); ``ids``
    selects rows by id (file order is kept; each requested id that is absent yields a ``RecordError``
    after the rows); ``limit`` caps the number of items. A row with no id (or a file with no
    ``id_column``) gets ``row-<index>``, the 0-based row number in the file. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` for an unsupported suffix, an unreadable
    file, or a structure/target column that the file does not have.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        structure_column: str = "structure",
        id_column: str = "id",
        targets: Mapping[str, str] | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} not found")
        suffix = self.path.suffix.lower()
        if suffix not in PARQUET_SUFFIXES + JSONL_SUFFIXES:
            raise ValueError(
                f"{self.path}: unsupported table format {suffix!r}; "
                f"use one of {PARQUET_SUFFIXES + JSONL_SUFFIXES}"
            )
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.is_parquet = suffix in PARQUET_SUFFIXES
        self.structure_column, self.id_column, self.limit = structure_column, id_column, limit
        self.ids = None if ids is None else list(dict.fromkeys(str(i) for i in ids))
        columns = self._columns()
        self.target_columns = dict(targets) if targets is not None else default_target_columns(columns)
        self.targets = tuple(self.target_columns)
        missing = [c for c in (structure_column, *self.target_columns.values()) if c not in columns]
        if missing:
            raise ValueError(f"{self.path} has no column(s) {missing}; its columns are {columns}")
        self.has_ids = id_column in columns
        if self.ids is not None and not self.has_ids:
            raise ValueError(f"cannot select ids: {self.path} has no id column {id_column!r}")

    def _columns(self) -> list[str]:
        """Column names: the Parquet schema, or the keys of the first JSON-lines object (so the default
        targets and the column checks of a JSON-lines file follow its first object)."""
        if self.is_parquet:
            try:
                return pq.ParquetFile(self.path).schema_arrow.names
            except (pa.ArrowException, OSError) as exc:
                raise ValueError(f"{self.path} is not a readable Parquet file: {exc}") from exc
        with open(self.path, "rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", errors="replace")
                if line.strip().startswith("["):
                    raise ValueError(f"{self.path} holds a JSON array; expected one JSON object per line")
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(first, dict):
                        return list(first)
        raise ValueError(f"{self.path} has no line holding a JSON object")

    def __iter__(self) -> Iterator[SourceItem]:
        items = self._selected(self._parquet_rows() if self.is_parquet else self._jsonl_rows())
        return itertools.islice(items, self.limit)

    def _selected(self, rows: Iterator[RecordError | _Row]) -> Iterator[SourceItem]:
        """Read the rows that pass the ``ids`` selection, then report the requested ids never seen.

        A line that is not a JSON object has no id, so it is reported only when nothing is selected.
        """
        wanted = None if self.ids is None else set(self.ids)
        seen: set[str] = set()
        for row in rows:
            if isinstance(row, RecordError):
                if wanted is None:
                    yield row
            elif wanted is None or row[1] in wanted:
                seen.add(row[1])
                yield self._read(*row)
        for record_id in self.ids or ():
            if record_id not in seen:
                yield RecordError(record_id, "read", f"id not found in {self.path.name}")

    def _row_id(self, index: int, value: object) -> str:
        return f"row-{index}" if value is None or str(value).strip() == "" else str(value).strip()

    def _parquet_rows(self, start: int = 0, stop: int | None = None) -> Iterator[_Row]:
        """``(index, id, cells)`` per row of rows ``start..stop-1``, reading only the row groups that
        hold them and the structure cells only of rows that are selected."""
        columns = list(dict.fromkeys([self.structure_column, *self.target_columns.values()]))
        wanted = None if self.ids is None else set(self.ids)
        id_columns = [self.id_column] if self.has_ids else []
        with pq.ParquetFile(self.path) as parquet:
            stop = parquet.metadata.num_rows if stop is None else stop
            group_starts = list(itertools.accumulate(
                (parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)), initial=0
            ))
            groups = [g for g in range(parquet.num_row_groups)
                      if group_starts[g] < stop and group_starts[g + 1] > start]
            offset = group_starts[groups[0]] if groups else 0
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=id_columns + columns, row_groups=groups):
                raw_ids = (
                    batch.column(self.id_column).to_pylist() if self.has_ids else [None] * batch.num_rows
                )
                row_ids = [self._row_id(offset + i, value) for i, value in enumerate(raw_ids)]
                keep = [
                    i for i, row_id in enumerate(row_ids)
                    if start <= offset + i < stop and (wanted is None or row_id in wanted)
                ]
                if keep:
                    kept = batch.take(pa.array(keep)) if len(keep) < batch.num_rows else batch
                    cells = {name: kept.column(name).to_pylist() for name in columns}
                    for j, i in enumerate(keep):
                        yield offset + i, row_ids[i], {name: values[j] for name, values in cells.items()}
                offset += batch.num_rows

    def _jsonl_rows(self) -> Iterator[RecordError | _Row]:
        """``(index, id, object)`` per non-blank line; a ``RecordError`` for a line that is no object, is not
        valid JSON or is not UTF-8 (each line is decoded alone, so one bad line costs only its row)."""
        with open(self.path, "rb") as handle:
            index = 0
            for line_number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield RecordError(f"row-{index}", "read", f"line {line_number} is not UTF-8 text "
                                      f"(byte {exc.start}: {raw[exc.start:exc.start + 1]!r})")
                except json.JSONDecodeError as exc:
                    yield RecordError(f"row-{index}", "read", f"line {line_number} is not valid JSON: {exc}")
                else:
                    if isinstance(row, dict):
                        yield index, self._row_id(index, row.get(self.id_column)), row
                    else:
                        yield RecordError(f"row-{index}", "read", f"line {line_number} is not a JSON object")
                index += 1

    def _read(self, index: int, record_id: str, cells: Mapping[str, Any]) -> SourceItem:
        """One row as a record, or a ``read`` error saying what is wrong with it."""
        try:
            targets = {
                name: parse_target(name, cells.get(column)) for name, column in self.target_columns.items()
            }
            structure = parse_structure_cell(cells.get(self.structure_column))
        except Exception as exc:  # any parser failure becomes this row's error, never the stream's
            return RecordError(record_id, "read", short_message(exc))
        return StructureRecord(record_id, structure, targets, provenance=f"{self.path}#{index}")

    def count(self) -> int | None:
        """Rows of a Parquet file read without an ``ids`` selection (from its metadata); else unknown."""
        if not self.is_parquet or self.ids is not None:
            return None
        rows = pq.ParquetFile(self.path).metadata.num_rows
        return rows if self.limit is None else min(rows, self.limit)

    def iter_range(self, start: int, stop: int) -> Iterator[SourceItem]:
        """Items ``start..stop-1``, reading only the Parquet row groups that hold them."""
        total = self.count()
        if total is None:
            return super().iter_range(start, stop)
        return (self._read(*row) for row in self._parquet_rows(start, min(stop, total)))

    def fingerprint(self) -> str:
        """SHA-256 of the file's bytes and of the options that select rows and name targets."""
        ids = "*" if self.ids is None else hash_strings(*self.ids)
        mapping = json.dumps(self.target_columns, sort_keys=True)
        return hash_file(self.path, self.structure_column, self.id_column, mapping, ids, str(self.limit))

    def describe(self) -> str:
        selection = "" if self.ids is None else f", {len(self.ids)} ids"
        limit = "" if self.limit is None else f", limit={self.limit}"
        return f"TableSource({self.path}, targets={self.target_columns}{selection}{limit})"

"""Source strings: one text names any input, on the command line and in job files.

=========================================================  =============================================
``DIR``                                                    CIF/POSCAR files + ``id_prop.csv`` (CGCNN)
``DIR?targets=e_form,band_gap``                            ... naming the id_prop.csv target columns
``FILE.parquet`` / ``FILE.jsonl``                          table with a structure column
``FILE.parquet?split=cpu_small/train``                     ... only the ids of a split in ``splits.json``
``FILE.parquet?targets=e_form:col_a,band_gap:col_b``       ... explicit target-column mapping
``matbench:matbench_mp_e_form?fold=0&split=train``         a Matbench task (its own folds)
``mp:chemsys=Li-Fe-O`` / ``mp:elements=Li,O`` / ``mp:ids=mp-1,mp-2``   Materials Project (``MP_API_KEY``)
``candidates:elements=Li,Na,Cl&prototypes=rocksalt&n=100&seed=0``   prototype substitution
=========================================================  =============================================

Further table options: ``splits=PATH`` (default ``splits.json`` beside the file), ``limit=N``,
``structure_column=``, ``id_column=``. Every source also accepts ``limit=N`` where it makes sense.

Every source with targets accepts ``ranges=NAME:LOW:HIGH[,...]`` (e.g. ``FILE.parquet?ranges=band_gap:0:30``):
a row whose target lies outside its physical range goes to the errors table with its value. The defaults
(:data:`hybridmat.data.validate.TARGET_RANGES`) are ``e_form`` and ``e_above_hull`` in [-10, 10] eV/atom,
``band_gap`` in [0, 20] eV.

A ``?`` starts the options, so a ``?`` in a file or directory name is written ``%3F`` (and a ``%`` as
``%25``): ``runs/what%3F.parquet?limit=5`` reads ``runs/what?.parquet``. No other escape is decoded.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

from hybridmat.console import UserError
from hybridmat.data.source import Source
from hybridmat.data.validate import TargetRangeSource, parse_target_ranges

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")
SOURCE_SCHEMES = ("matbench", "mp", "candidates")


class SourceStringError(UserError):
    """A source string that names no readable input, or has a bad option; the message says which."""


def _split_spec(spec: str) -> tuple[str, dict[str, str]]:
    body, _, query = spec.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SourceStringError(f"source {spec!r}: cannot read the options {query!r} after '?' (write KEY=VALUE "
                                "joined by '&'; a '?' in a file name is written %3F)") from None
    return body, options


def _csv(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def _int(options: dict[str, str], key: str, spec: str) -> int | None:
    if key not in options:
        return None
    try:
        return int(options.pop(key))
    except ValueError:
        raise SourceStringError(f"source {spec!r}: option {key!r} must be an integer") from None


def _reject_unknown(options: dict[str, str], allowed: set[str], spec: str) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise SourceStringError(
            f"source {spec!r}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )


def _table_source(path: Path, options: dict[str, str], spec: str) -> Source:
    from hybridmat.data.splits import load_splits
    from hybridmat.data.tables import TableSource

    _reject_unknown(options, {"split", "splits", "targets", "limit", "structure_column", "id_column"}, spec)
    ids = None
    if "split" in options:
        name, _, part = options["split"].partition("/")
        splits_file = Path(options.get("splits") or path.with_name("splits.json"))
        splits = load_splits(splits_file, name)
        if part not in splits:
            raise SourceStringError(f"source {spec!r}: split {name!r} has parts {sorted(splits)}, not {part!r}")
        ids = splits[part]
    targets = None
    if "targets" in options:
        targets = dict(pair.split(":", 1) for pair in _csv(options["targets"]) or [])
    return TableSource(
        path,
        structure_column=options.get("structure_column", "structure"),
        id_column=options.get("id_column", "id"),
        targets=targets,
        ids=ids,
        limit=_int(options, "limit", spec),
    )


def _matbench_source(task: str, options: dict[str, str], spec: str) -> Source:
    from hybridmat.data.matbench_source import MatbenchSource

    _reject_unknown(options, {"fold", "split"}, spec)
    return MatbenchSource(task, fold=_int(options, "fold", spec), split=options.get("split", "all"))


def _mp_source(body: str, options: dict[str, str], spec: str) -> Source:
    from hybridmat.data.mp_source import MaterialsProjectSource

    query = dict(parse_qsl(body.replace(";", "&"))) | options
    _reject_unknown(query, {"chemsys", "elements", "ids", "limit", "endpoint"}, spec)
    return MaterialsProjectSource(
        chemsys=query.get("chemsys"),
        elements=_csv(query.get("elements")),
        material_ids=_csv(query.get("ids")),
        endpoint=query.get("endpoint"),
        limit=_int(query, "limit", spec),
    )


def _candidate_source(body: str, options: dict[str, str], spec: str) -> Source:
    from hybridmat.data.candidates import CandidateSource

    query = dict(parse_qsl(body)) | options
    _reject_unknown(query, {"elements", "prototypes", "n", "seed", "charge_balanced"}, spec)
    if "elements" not in query or "prototypes" not in query:
        raise SourceStringError(f"source {spec!r}: candidates need elements=... and prototypes=...")
    return CandidateSource(
        elements=_csv(query["elements"]) or [],
        prototypes=_csv(query["prototypes"]) or [],
        n=_int(query, "n", spec),
        seed=_int(query, "seed", spec) or 0,
        charge_balanced=query.get("charge_balanced", "true").lower() not in {"0", "false", "no"},
    )


def unescape_path(body: str) -> str:
    """A source string's path with its two escapes decoded: ``%3F`` -> ``?`` and ``%25`` -> ``%``."""
    return re.sub(r"%(3[Ff]|25)", lambda match: "?" if match.group(1) != "25" else "%", body)


def open_source(spec: str) -> Source:
    """Open the source named by ``spec`` (see the module docstring for the forms); a source with targets
    is checked against their physical ranges (``ranges=`` overrides them)."""
    body, options = _split_spec(spec)
    try:
        ranges = parse_target_ranges(options.pop("ranges", ""))
    except ValueError as error:
        raise SourceStringError(f"source {spec!r}: {error}") from None
    source = _open(body, options, spec)
    unknown = sorted(set(ranges) - set(source.targets))
    if unknown:
        raise SourceStringError(f"source {spec!r}: ranges for {unknown}, which it does not provide; "
                         f"its targets: {list(source.targets)}")
    return TargetRangeSource(source, ranges) if source.targets else source


def _open(body: str, options: dict[str, str], spec: str) -> Source:
    scheme, sep, rest = body.partition(":")
    if sep and scheme == "matbench":
        return _matbench_source(rest, options, spec)
    if sep and scheme == "mp":
        return _mp_source(rest, options, spec)
    if sep and scheme == "candidates":
        return _candidate_source(rest, options, spec)
    path = Path(unescape_path(body))
    if path.is_dir():
        from hybridmat.data.cif_dir import CifDirectorySource

        _reject_unknown(options, {"targets"}, spec)
        return CifDirectorySource(path, target_names=_csv(options.get("targets")))
    if path.suffix in TABLE_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"source {spec!r}: no such file {path}")
        return _table_source(path, options, spec)
    raise SourceStringError(
        f"cannot read source {spec!r}: expected a directory with id_prop.csv, a "
        f"{'/'.join(TABLE_SUFFIXES)} file, or matbench:/mp:/candidates: (see `hybridmat featurize --help`)"
    )

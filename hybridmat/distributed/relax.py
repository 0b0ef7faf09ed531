"""``hybridmat relax``: relax every structure of a source with a universal potential, shard by shard.

::

    source ─► RelaxWorker (potential loaded once, 1 CPU or a GPU share, ×W) ─► driver ─► OUT/shards/

:func:`relax_shard` is the stage: a pure function of a shard's rows, run as is by the single-process path
(:func:`relax_to_store`) and by each Ray actor (:func:`relax_with_ray`). OUT is laid out like a feature
store and committed the same way (``manifest.json``, ``shards/part-NNNNN[.errors].parquet``,
``errors.parquet``; exactly once, resumable, every input id a row or an error), with rows

``index, id, formula, n_sites, structure`` (relaxed, pymatgen dict JSON, like the inputs)
``, energy_per_atom, initial_energy_per_atom, potential_e_form, steps, converged, max_force,
volume_change, seconds`` and the source's targets. ``potential_e_form`` is on Materials Project's scale
(:mod:`hybridmat.potentials.formation`), NaN for a potential without one. A relaxation that hits a guard
(:mod:`hybridmat.potentials.relax`) is an error row with stage ``relax`` and the guard as its reason.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source, hash_strings
from hybridmat.distributed.pool import commit_with_pool, start_actors
from hybridmat.distributed.runtime import gpu_share, require_cpus
from hybridmat.features.pipeline import ShardInput, ShardResult, commit_shards, pending_shards
from hybridmat.features.store import completed_shards, shard_path, start_manifest
from hybridmat.locking import holds_directory_lock
from hybridmat.potentials.base import Potential, load_potential, potential_class
from hybridmat.potentials.formation import formation_energy_per_atom, load_elemental_refs
from hybridmat.potentials.relax import RelaxationError, RelaxResult, RelaxSettings, relax_structure

#: Most structures per shard: a shard is minutes of work, so shards are small and committed often.
DEFAULT_RELAX_SHARD_SIZE = 8
#: Shards per input set aimed for when a set is small, so that every worker stays busy to the end.
MIN_SHARDS = 16
RESULT_COLUMNS = ("energy_per_atom", "initial_energy_per_atom", "potential_e_form", "steps", "converged",
                  "max_force", "volume_change", "seconds")


def _row(index: int, record: StructureRecord, result: RelaxResult, e_form: float) -> dict[str, Any]:
    return {
        "index": index, "id": record.id, "formula": record.formula, "n_sites": len(result.structure),
        "structure": result.structure.to_json(),  # MontyEncoder: the potential's float32 site properties
        "energy_per_atom": result.energy_per_atom, "initial_energy_per_atom": result.initial_energy_per_atom,
        "potential_e_form": e_form, "steps": result.steps, "converged": result.converged,
        "max_force": result.max_force, "volume_change": result.volume_change, "seconds": result.seconds,
        **{f"target_{name}": float(value) for name, value in record.targets.items()},
    }


def relaxed_table(rows: list[dict[str, Any]], target_names: tuple[str, ...]) -> pa.Table:
    """The shard's rows as an Arrow table with a fixed schema (also when it has no rows)."""
    schema = pa.schema(
        [("index", pa.int64()), ("id", pa.string()), ("formula", pa.string()), ("n_sites", pa.int64()),
         ("structure", pa.string()), ("energy_per_atom", pa.float64()), ("initial_energy_per_atom", pa.float64()),
         ("potential_e_form", pa.float64()), ("steps", pa.int64()), ("converged", pa.bool_()),
         ("max_force", pa.float64()), ("volume_change", pa.float64()), ("seconds", pa.float64())]
        + [(f"target_{name}", pa.float64()) for name in target_names]
    )
    columns = {field.name: [row.get(field.name, math.nan) for row in rows] for field in schema}
    return pa.table(columns, schema=schema)


def relax_shard(items: Iterable[SourceItem], first_index: int, potential: Potential, settings: RelaxSettings,
                target_names: tuple[str, ...] = ()) -> ShardResult:
    """Relax one shard's structures; ``(relaxed table, indexed errors, number of inputs)``."""
    calculator = potential.calculator()
    refs = load_elemental_refs() if potential.energy_scale == "mp2020" else None
    rows: list[dict[str, Any]] = []
    errors: list[tuple[int, RecordError]] = []
    count = 0
    for index, item in enumerate(items, start=first_index):
        count += 1
        if isinstance(item, RecordError):
            errors.append((index, item))
            continue
        try:
            result = relax_structure(item.structure, calculator, settings)
        except RelaxationError as error:
            errors.append((index, RecordError(item.id, "relax", str(error))))
            continue
        e_form = math.nan
        if refs is not None:
            try:
                e_form = formation_energy_per_atom(result.structure.composition,
                                                   result.energy_per_atom * len(result.structure), refs)
            except KeyError as error:
                errors.append((index, RecordError(item.id, "formation energy", str(error.args[0]))))
                continue
        rows.append(_row(index, item, result, e_form))
    return relaxed_table(rows, target_names), errors, count


def relax_shard_size(count: int | None) -> int:
    """Structures per shard for ``count`` inputs: at most :data:`DEFAULT_RELAX_SHARD_SIZE`, fewer for a small set
    (a 20-structure shortlist is cut into 20 / :data:`MIN_SHARDS` → 2 per shard, so two workers end together).
    It depends on the input only, so a rerun with another number of workers resumes the same shards."""
    if count is None:
        return DEFAULT_RELAX_SHARD_SIZE
    return max(1, min(DEFAULT_RELAX_SHARD_SIZE, math.ceil(count / MIN_SHARDS)))


def _start(source: Source, out: Path, spec: str, potential: dict[str, Any], settings: RelaxSettings,
           shard_size: int, overwrite: bool) -> tuple[dict[str, Any], set[int]]:
    manifest = start_manifest(
        out, source={"spec": spec, "description": source.describe(), "fingerprint": source.fingerprint()},
        settings=settings.as_dict(), composition_labels=[], target_names=list(source.targets),
        shard_size=shard_size, overwrite=overwrite, extra_identity={"kind": "relaxed", "potential": potential},
    )
    return manifest, completed_shards(out)


@holds_directory_lock("out", "relax")
def relax_to_store(source: Source, out: Path, *, spec: str, potential: str | Potential = "chgnet",
                   settings: RelaxSettings | None = None, shard_size: int | None = None,
                   overwrite: bool = False, progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Relax ``source`` into ``out`` in this process (no Ray); resumable; returns the final manifest.
    ``shard_size`` defaults to :func:`relax_shard_size` of the source's count."""
    settings, out = settings or RelaxSettings(), Path(out)
    shard_size = shard_size or relax_shard_size(source.count())
    model = load_potential(potential, device) if isinstance(potential, str) else potential
    targets = tuple(source.targets)
    manifest, done = _start(source, out, spec, model.describe(), settings, shard_size, overwrite)
    results = ((shard, relax_shard(shard.read(source), shard.start, model, settings, targets))
               for shard in pending_shards(source, shard_size, done))
    return commit_shards(out, manifest, results, source.count(), len(done) * shard_size,
                         f"relax ({model.name})", progress)


class RelaxWorker:
    """A Ray actor: the source and a potential loaded once on its device; relaxes one shard per call."""

    def __init__(self, source: Source, potential: str, settings: RelaxSettings) -> None:
        import torch

        # One torch thread per actor: on the small graphs of a relaxation a second thread costs more than it gives
        # (``hybridmat bench relax``: 1 thread per worker ≈ 1.7x one process with 2 threads), so CPUs go to workers.
        torch.set_num_threads(1)
        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        self.source, self.settings = source, settings
        self.potential = load_potential(potential, device)
        self.target_names = tuple(source.targets)

    def relax(self, shard: ShardInput) -> ShardResult:
        """``(relaxed table, indexed errors, number of inputs)`` of one shard."""
        return relax_shard(shard.read(self.source), shard.start, self.potential, self.settings, self.target_names)


@holds_directory_lock("out", "relax")
def relax_with_ray(source: Source, out: Path, *, spec: str, workers: int, potential: str = "chgnet",
                   settings: RelaxSettings | None = None, shard_size: int | None = None,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Relax ``source`` into ``out`` with ``workers`` actors (Ray must be running); same files as
    :func:`relax_to_store`. Each actor takes one CPU (one torch thread) and, on a cluster with GPUs, an equal
    share of the GPUs."""
    settings, out = settings or RelaxSettings(), Path(out)
    total = source.count()  # before the source is shipped to the actors: lets a source cache its index
    shard_size = shard_size or relax_shard_size(total)
    require_cpus(workers, f"{workers} relaxation workers")
    manifest, done = _start(source, out, spec, potential_class(potential).describe(), settings, shard_size,
                            overwrite)
    pool = start_actors(RelaxWorker, workers, source, potential, settings, num_cpus=1, num_gpus=gpu_share(workers))
    return commit_with_pool(pool, "relax", pending_shards(source, shard_size, done), lambda results: commit_shards(
        out, manifest, results, total, len(done) * shard_size, f"relax ({potential}, {workers} workers)", progress))


def read_relaxed(out: Path) -> pa.Table:
    """Every relaxed row of a finished relaxation directory, in input order."""
    tables = [pq.read_table(shard_path(Path(out), s)) for s in sorted(completed_shards(Path(out)))]
    return pa.concat_tables(tables).sort_by("index") if tables else relaxed_table([], ())


def relaxed_records(table: pa.Table) -> Iterator[StructureRecord]:
    """The relaxed structures of :func:`read_relaxed` as records (targets restored from ``target_*``)."""
    from pymatgen.core import Structure

    target_columns = [name for name in table.column_names if name.startswith("target_")]
    for row in table.to_pylist():
        yield StructureRecord(row["id"], Structure.from_dict(json.loads(row["structure"])),
                              {name[7:]: row[name] for name in target_columns}, provenance="relaxed")


class RelaxedSource(Source):
    """The relaxed structures of a finished relaxation directory as a source, in input order (targets restored)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.table = read_relaxed(self.directory)
        self.targets = tuple(name[7:] for name in self.table.column_names if name.startswith("target_"))

    def __iter__(self) -> Iterator[SourceItem]:
        return relaxed_records(self.table)

    def count(self) -> int:
        return self.table.num_rows

    def fingerprint(self) -> str:
        return hash_strings("relaxed", *self.table.column("id").to_pylist(),
                            *self.table.column("structure").to_pylist())

    def describe(self) -> str:
        return f"RelaxedSource({self.directory})"


def write_extxyz(table: pa.Table, path: Path) -> int:
    """Write the relaxed structures of ``table`` to an extended-XYZ file (id, energy, steps in each frame's info)."""
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for record, row in zip(relaxed_records(table), table.to_pylist()):
        atoms = AseAtomsAdaptor.get_atoms(record.structure)
        atoms.info.update(id=row["id"], energy_per_atom=row["energy_per_atom"], steps=row["steps"],
                          converged=row["converged"], potential_e_form=row["potential_e_form"])
        frames.append(atoms)
    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    atomic_write_bytes(Path(path), buffer.getvalue().encode())
    return len(frames)

"""The relax stage: one process and Ray actors write the same shards; every input is a row or an error."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from hybridmat.cli import app
from hybridmat.data.records import StructureRecord
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.distributed.relax import (
    read_relaxed,
    relax_shard,
    relax_to_store,
    relax_with_ray,
    relaxed_records,
)
from hybridmat.features.store import read_manifest
from hybridmat.potentials.base import load_potential
from hybridmat.potentials.relax import RelaxSettings
from tests.conftest import rocksalt

FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


pytestmark = pytest.mark.usefixtures("local_ray")


def _records() -> list[StructureRecord]:
    """7 strained copper cells, one close-atom cell, one element EMT lacks, one repeated id."""
    records = [StructureRecord(f"cu-{i}", Structure(Lattice.cubic(3.5 + 0.04 * i), ["Cu"] * 4, FCC), {"e_form": 0.0})
               for i in range(7)]
    records.append(StructureRecord("squeezed", Structure(Lattice.cubic(3.6), ["Cu"] * 2, [[0, 0, 0], [0.1, 0, 0]]),
                                   {"e_form": 0.0}))
    records.append(StructureRecord("nacl", rocksalt(), {"e_form": -2.0}))
    records.append(StructureRecord("cu-2", Structure(Lattice.cubic(3.7), ["Cu"] * 4, FCC), {"e_form": 0.0}))
    return records


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("relax") / "inputs.parquet"
    write_structure_table(_records(), path)
    return path


def _comparable(out: Path) -> list[tuple]:
    """What must not depend on where a shard ran (floats to 1e-9: thread counts change the last bits)."""
    return [(row["index"], row["id"], row["steps"], row["converged"], round(row["energy_per_atom"], 9),
             round(Structure.from_dict(json.loads(row["structure"])).volume, 6))
            for row in read_relaxed(out).to_pylist()]


def test_every_input_is_a_relaxed_row_or_an_error(table_file: Path, tmp_path: Path) -> None:
    manifest = relax_to_store(open_source(str(table_file)), tmp_path, spec=str(table_file), potential="emt",
                              shard_size=4, progress=False)
    assert manifest["counts"] == {"inputs": 10, "rows": 7, "errors": 3, "shards": 3}
    assert manifest["potential"]["name"] == "emt" and manifest["kind"] == "relaxed"
    errors = {row["id"]: row for row in pq.read_table(tmp_path / "errors.parquet").to_pylist()}
    assert errors["squeezed"]["stage"] == "relax" and "close atoms" in errors["squeezed"]["reason"]
    assert errors["nacl"]["reason"].startswith("potential")
    assert errors["cu-2"]["stage"] == "duplicate"
    table = read_relaxed(tmp_path)
    assert table.column("id").to_pylist() == [f"cu-{i}" for i in range(7)]
    assert all(table.column("converged").to_pylist())
    lattice = [Structure.from_dict(json.loads(s)).lattice.a for s in table.column("structure").to_pylist()]
    assert max(lattice) - min(lattice) < 0.01  # every strain relaxed to EMT's one lattice constant
    assert table.column("target_e_form").to_pylist() == [0.0] * 7
    assert [r.id for r in relaxed_records(table)] == [f"cu-{i}" for i in range(7)]


def test_ray_workers_write_the_same_rows_and_a_rerun_resumes(table_file: Path, tmp_path: Path) -> None:
    single, pooled = tmp_path / "single", tmp_path / "pooled"
    relax_to_store(open_source(str(table_file)), single, spec=str(table_file), potential="emt", shard_size=3,
                   progress=False)
    manifest = relax_with_ray(open_source(str(table_file)), pooled, spec=str(table_file), workers=2,
                              potential="emt", shard_size=3, progress=False)
    assert manifest["counts"]["inputs"] == 10
    assert _comparable(pooled) == _comparable(single)
    shard = pooled / "shards" / "part-00000.parquet"
    written = shard.stat().st_mtime_ns
    relax_with_ray(open_source(str(table_file)), pooled, spec=str(table_file), workers=1, potential="emt",
                   shard_size=3, progress=False)
    assert shard.stat().st_mtime_ns == written  # committed shards are not redone
    assert read_manifest(pooled)["counts"] == manifest["counts"]


def test_cli_relax_writes_shards_and_extxyz(table_file: Path, tmp_path: Path) -> None:
    from ase.io import read

    result = CliRunner().invoke(app, ["relax", str(table_file), "--out", str(tmp_path / "out"), "--potential", "emt",
                                      "--extxyz", str(tmp_path / "relaxed.extxyz"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "7 relaxed (7 converged)" in result.output
    frames = read(tmp_path / "relaxed.extxyz", index=":")
    assert [f.info["id"] for f in frames] == [f"cu-{i}" for i in range(7)]


def test_cli_refuses_an_unknown_potential(table_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["relax", str(table_file), "--out", str(tmp_path), "--potential", "mace"])
    assert result.exit_code == 2 and "unknown potential" in result.output


@pytest.mark.integration
def test_chgnet_relaxes_a_small_cell_with_a_formation_energy_on_mp_scale() -> None:
    nacl = StructureRecord("nacl", Structure(Lattice.cubic(4.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    table, errors, count = relax_shard([nacl], 0, load_potential("chgnet"), RelaxSettings())
    (row,) = table.to_pylist()
    assert count == 1 and not errors and row["converged"]
    assert row["potential_e_form"] == pytest.approx(-2.1, abs=0.25)  # CsCl-type NaCl, near rocksalt's −2.1

"""TableSource on Parquet and JSON lines; the fast ``structure_from_dict``; the real datasets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Species, Structure

from hybridmat.data import tables
from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.data.splits import load_splits
from hybridmat.data.tables import TableSource, structure_from_dict
from hybridmat.data.writers import records_to_table

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def cscl(a: float, a_site: str = "Cs", b_site: str = "Cl") -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rows(n: int) -> list[dict[str, Any]]:
    """``n`` rows as the shared datasets store them (JSON strings, unit-suffixed target columns)."""
    return [
        {
            "id": f"m-{i}",
            "structure": json.dumps(cscl(4.0 + 0.1 * i).as_dict()),
            "e_form_eV_per_atom": -1.0 - i,
            "band_gap_eV": 0.5 * i,
            "n_sites": 2,
        }
        for i in range(n)
    ]


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_parquet_rows_become_records(tmp_path: Path) -> None:
    source = TableSource(write_parquet(tmp_path / "t.parquet", rows(3)))
    assert source.targets == ("e_form", "band_gap")
    items = list(source)
    assert [item.id for item in items] == ["m-0", "m-1", "m-2"]
    assert items[1].structure == cscl(4.1)
    assert items[1].targets == {"e_form": -2.0, "band_gap": 0.5}
    assert items[2].provenance.endswith("t.parquet#2")


def test_structure_cell_formats_detected_per_row(tmp_path: Path) -> None:
    structure = cscl(4.2)
    records = [
        {"id": "json", "structure": json.dumps(structure.as_dict())},
        {"id": "nested", "structure": structure.as_dict()},
        {"id": "cif", "structure": structure.to(fmt="cif")},
    ]
    items = list(TableSource(write_jsonl(tmp_path / "t.jsonl", records)))
    assert all(isinstance(item, StructureRecord) for item in items)
    assert items[0].structure == structure and items[1].structure == structure
    assert items[2].structure.composition == structure.composition
    assert items[2].structure.lattice.abc == pytest.approx(structure.lattice.abc)
    assert items[0].targets == {}


def test_bad_rows_become_errors(tmp_path: Path) -> None:
    good = json.dumps(cscl(4.0).as_dict())
    records: list[dict[str, Any] | str] = [
        {"id": "empty", "structure": "", "e_form": -1.0},
        {"id": "none", "structure": None, "e_form": -1.0},
        {"id": "corrupt-cif", "structure": "data_x\nloop_\n_atom_site_label\nNa1\n", "e_form": -1.0},
        {"id": "bad-json", "structure": '{"lattice": ', "e_form": -1.0},
        {"id": "no-lattice", "structure": {"sites": []}, "e_form": -1.0},
        {"id": "text-target", "structure": good, "e_form": "abc"},
        {"id": "nan-target", "structure": good, "e_form": None},
        "{not json",
        {"structure": good, "e_form": -2.0},
    ]
    items = list(TableSource(write_jsonl(tmp_path / "t.jsonl", records)))
    assert len(items) == len(records)
    reason = {item.id: item.reason for item in items if isinstance(item, RecordError)}
    assert reason["empty"] == reason["none"] == "structure column is empty"
    assert reason["corrupt-cif"].startswith("CIF could not be parsed:")
    assert reason["bad-json"].startswith("structure is neither CIF nor valid JSON")
    assert reason["no-lattice"] == "structure dict has no 'lattice' key"
    assert reason["text-target"] == "target 'e_form' is not a number: 'abc'"
    assert reason["row-7"].startswith("line 8 is not valid JSON")
    assert math.isnan(items[6].targets["e_form"])  # unknown labels stay NaN; check_targets decides
    assert items[8].id == "row-8" and isinstance(items[8], StructureRecord)


def test_ids_select_rows_in_file_order_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "BATCH_ROWS", 2)
    path = write_parquet(tmp_path / "t.parquet", rows(7))
    items = list(TableSource(path, ids=["m-5", "absent", "m-1", "m-4"]))
    assert [item.id for item in items] == ["m-1", "m-4", "m-5", "absent"]
    assert [item.provenance.rsplit("#")[1] for item in items[:3]] == ["1", "4", "5"]
    assert isinstance(items[3], RecordError) and items[3].reason == "id not found in t.parquet"
    assert [item.id for item in TableSource(path, limit=3)] == ["m-0", "m-1", "m-2"]
    assert [item.id for item in TableSource(path, ids=["m-6", "m-2"], limit=1)] == ["m-2"]


def test_rows_without_ids_get_row_numbers(tmp_path: Path) -> None:
    records = rows(3)
    records[1]["id"] = None
    assert [item.id for item in TableSource(write_parquet(tmp_path / "a.parquet", records))] == [
        "m-0",
        "row-1",
        "m-2",
    ]
    no_ids = [{k: v for k, v in row.items() if k != "id"} for row in rows(2)]
    path = write_parquet(tmp_path / "b.parquet", no_ids)
    assert [item.id for item in TableSource(path)] == ["row-0", "row-1"]
    with pytest.raises(ValueError, match="no id column"):
        TableSource(path, ids=["row-0"])


def test_target_mapping(tmp_path: Path) -> None:
    perovskite_like = [
        {
            "id": "p",
            "structure": json.dumps(cscl(4.0).as_dict()),
            "heat_of_formation_ref_eV": 1.2,
            "band_gap_direct_gllbsc_eV": 0.0,
        }
    ]
    path = write_parquet(tmp_path / "p.parquet", perovskite_like)
    assert TableSource(path).targets == ()  # a heat of formation is never read as e_form
    explicit = TableSource(path, targets={"heat_of_formation": "heat_of_formation_ref_eV"})
    assert next(iter(explicit)).targets == {"heat_of_formation": 1.2}
    with pytest.raises(ValueError, match="no column"):
        TableSource(path, targets={"e_form": "e_form_eV_per_atom"})


def test_whole_file_problems_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TableSource(tmp_path / "missing.parquet")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        TableSource(tmp_path / "empty.parquet")
    (tmp_path / "array.json").write_text('[{"id": "a"}]')
    with pytest.raises(ValueError, match="JSON array"):
        TableSource(tmp_path / "array.json")
    (tmp_path / "t.csv").write_text("id\n")
    with pytest.raises(ValueError, match="unsupported"):
        TableSource(tmp_path / "t.csv")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no line holding a JSON object"):
        TableSource(tmp_path / "empty.jsonl")
    path = write_parquet(tmp_path / "t.parquet", rows(1))
    with pytest.raises(ValueError, match="'cif'"):
        TableSource(path, structure_column="cif")


def test_fingerprint_follows_content_and_options(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", rows(3))
    first = TableSource(path).fingerprint()
    assert first == TableSource(path).fingerprint()
    others = {
        TableSource(path, ids=["m-1"]).fingerprint(),
        TableSource(path, limit=2).fingerprint(),
        TableSource(path, targets={"e_form": "e_form_eV_per_atom"}).fingerprint(),
    }
    assert first not in others and len(others) == 3
    write_parquet(path, rows(4))
    assert TableSource(path).fingerprint() != first


def test_fast_structure_from_dict_matches_pymatgen() -> None:
    plain = cscl(4.0)
    magnetic = cscl(4.1, "Fe", "Co")
    magnetic.add_site_property("magmom", [2.2, 1.1])
    oxidised = Structure(Lattice.cubic(4.0), [Species("Cs", 1), Species("Cl", -1)], [[0, 0, 0], [0.5] * 3])
    disordered = Structure(Lattice.cubic(4.0), [{"Cs": 0.5, "Rb": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    slab = Structure(
        Lattice(cscl(4.0).lattice.matrix, pbc=(True, True, False)),
        ["Cs", "Cl"],
        [[0, 0, 0], [0.5] * 3],
        labels=["Cs1", "Cl9"],
        properties={"source": "test"},
    )
    unlabelled = plain.as_dict()
    for site in unlabelled["sites"]:
        del site["label"]
    for data in [s.as_dict() for s in (plain, magnetic, oxidised, disordered, slab)] + [unlabelled]:
        expected, fast = Structure.from_dict(json.loads(json.dumps(data))), structure_from_dict(data)
        assert fast == expected and fast.as_dict() == expected.as_dict()
        assert [site.label for site in fast] == [site.label for site in expected]


@pytest.mark.integration
def test_reads_the_shared_datasets() -> None:
    path = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
    if not path.exists():
        pytest.skip(f"{path} not available")
    val = load_splits(SHARED_DATA / "mp_cgcnn36k" / "splits.json", "cpu_small")["val"]
    items = list(TableSource(path, ids=val))
    assert len(items) == 500 and all(isinstance(item, StructureRecord) for item in items)
    expected = {
        row["id"]: row
        for row in pq.read_table(
            path, columns=["id", "e_form_eV_per_atom", "band_gap_eV", "n_sites"], filters=[("id", "in", val)]
        ).to_pylist()
    }
    for item in items:
        row = expected[item.id]
        assert item.targets == {"e_form": row["e_form_eV_per_atom"], "band_gap": row["band_gap_eV"]}
        assert len(item.structure) == row["n_sites"]
    perovskites = SHARED_DATA / "perov5_castelli" / "perov5_castelli.parquet"
    source = TableSource(perovskites, limit=200)
    assert source.targets == ()
    assert sum(isinstance(item, StructureRecord) and len(item.structure) == 5 for item in source) == 200


def test_parquet_iter_range_reads_only_the_requested_rows(tmp_path: Path) -> None:
    records = [
        StructureRecord(f"x-{i}", Structure(Lattice.cubic(3.0 + 0.01 * i), ["Cu"], [[0, 0, 0]]), {"e_form": float(i)})
        for i in range(30)
    ]
    path = tmp_path / "t.parquet"
    pq.write_table(records_to_table(records), path, row_group_size=8)  # 4 row groups
    source = TableSource(path)
    assert source.count() == 30
    assert [item.id for item in source.iter_range(7, 19)] == [f"x-{i}" for i in range(7, 19)]
    assert [item.id for item in source.iter_range(25, 40)] == [f"x-{i}" for i in range(25, 30)]
    assert TableSource(path, limit=10).count() == 10
    assert TableSource(path, ids=["x-1"]).count() is None

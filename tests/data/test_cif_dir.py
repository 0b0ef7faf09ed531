"""CifDirectorySource: the CGCNN/ALIGNN directory convention, file lookup, bad rows, fingerprint."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

from hybridmat.data.cif_dir import CifDirectorySource
from hybridmat.data.records import RecordError, StructureRecord

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def rocksalt(a: float, cation: str = "Na", anion: str = "Cl") -> Structure:
    """The conventional 8-atom rock-salt cell."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    shifted = [[(x + 0.5) % 1, y, z] for x, y, z in fcc]
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, fcc + shifted)


def make_dir(root: Path, id_prop: str, files: dict[str, Structure | str]) -> Path:
    """A directory with ``id_prop.csv`` and structure files (written by pymatgen, or raw text)."""
    root.mkdir(exist_ok=True)
    (root / "id_prop.csv").write_text(id_prop)
    for name, content in files.items():
        if isinstance(content, str):
            (root / name).write_text(content)
        else:
            fmt = "cif" if name.endswith(".cif") else "poscar"
            (root / name).write_text(content.to(fmt=fmt))
    return root


def by_id(source: CifDirectorySource) -> dict[str, StructureRecord | RecordError]:
    return {item.id: item for item in source}


def test_reads_cgcnn_directory(tmp_path: Path) -> None:
    root = make_dir(
        tmp_path / "d", "0,-1.5\n1,0.25\n", {"0.cif": rocksalt(5.6), "1.cif": rocksalt(4.2, "Li", "F")}
    )
    source = CifDirectorySource(root)
    assert source.targets == ("target",)
    items = list(source)
    assert [item.id for item in items] == ["0", "1"]
    assert all(isinstance(item, StructureRecord) for item in items)
    assert items[0].formula == "NaCl" and items[1].formula == "LiF"
    assert items[0].structure.lattice.abc == pytest.approx((5.6, 5.6, 5.6))
    assert len(items[0].structure) == 8  # the conventional cell as written, not the primitive one
    assert items[0].targets == {"target": -1.5}
    assert items[0].provenance == str(root / "0.cif")


def test_names_several_targets(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "d", "mp-1,-1.5,2.0\n", {"mp-1.cif": rocksalt(5.6)})
    assert CifDirectorySource(root).targets == ("target_0", "target_1")
    (record,) = CifDirectorySource(root, target_names=("e_form", "band_gap"))
    assert record.targets == {"e_form": -1.5, "band_gap": 2.0}


def test_file_lookup_order(tmp_path: Path) -> None:
    files = {
        "a.vasp": rocksalt(4.0),
        "POSCAR-b": rocksalt(4.1),
        "c": rocksalt(4.2),
        "d.poscar": rocksalt(4.3),
        "e.cif": rocksalt(4.4),
        "f.cif": rocksalt(4.5),
        "f.vasp": rocksalt(9.9),
    }
    root = make_dir(tmp_path / "d", "a,1\nb,2\nc,3\nd,4\ne.cif,5\nf,6\n", files)
    records = by_id(CifDirectorySource(root))
    assert list(records) == ["a", "b", "c", "d", "e", "f"]
    lattice = {key: round(record.structure.lattice.a, 3) for key, record in records.items()}
    assert lattice == {"a": 4.0, "b": 4.1, "c": 4.2, "d": 4.3, "e": 4.4, "f": 4.5}


def test_bad_rows_become_errors(tmp_path: Path) -> None:
    files = {
        "good.cif": rocksalt(5.0),
        "corrupt.cif": "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\nNa1\n",
        "empty.cif": "",
        "text.cif": rocksalt(5.0),
        "nan.cif": rocksalt(5.0),
        "bad.vasp": "not a poscar\n",
    }
    id_prop = "good,1.0\ncorrupt,1.0\nempty,1.0\nmissing,1.0\ntext,abc\nnan,\n,2.0\ngood,1.0,2.0\nbad,1\n"
    items = list(CifDirectorySource(make_dir(tmp_path / "d", id_prop, files)))
    assert len(items) == 9  # one item per row, duplicates included
    reasons = {i: item.reason for i, item in enumerate(items) if isinstance(item, RecordError)}
    assert reasons[1].startswith("corrupt.cif: CIF could not be parsed:")
    assert reasons[2] == "empty.cif: file is empty"
    assert reasons[3].startswith("structure file not found") and "missing.cif" in reasons[3]
    assert reasons[4] == "target 'target' is not a number: 'abc'"
    assert items[6].id == "row-6" and "no id" in reasons[6]
    assert "expected 1 target column" in reasons[7]
    assert reasons[8].startswith("bad.vasp: POSCAR could not be parsed")
    assert set(reasons) == {1, 2, 3, 4, 6, 7, 8}
    assert math.isnan(items[5].targets["target"])  # an empty label is kept as NaN, not an error


def test_header_row_is_explained(tmp_path: Path) -> None:
    items = list(CifDirectorySource(make_dir(tmp_path / "d", "id,e_form\n0,1.0\n", {"0.cif": rocksalt(5.0)})))
    assert isinstance(items[0], RecordError) and "no header row" in items[0].reason
    assert isinstance(items[1], StructureRecord)


def test_missing_or_empty_input_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CifDirectorySource(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"id_prop\.csv"):
        CifDirectorySource(tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        CifDirectorySource(make_dir(tmp_path / "d", "\n", {}))


def test_fingerprint_follows_files_and_options(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "d", "0,1.0\n", {"0.cif": rocksalt(5.0), "unrelated.cif": rocksalt(4.0)})
    first = CifDirectorySource(root).fingerprint()
    assert first == CifDirectorySource(root).fingerprint()
    assert first != CifDirectorySource(root, target_names=("e_form",)).fingerprint()
    (root / "unrelated.cif").write_text("changed")
    assert CifDirectorySource(root).fingerprint() == first
    (root / "0.cif").write_text(rocksalt(5.1).to(fmt="cif"))
    os.utime(root / "0.cif", ns=(1, 1))
    second = CifDirectorySource(root).fingerprint()
    assert second != first
    (root / "id_prop.csv").write_text("0,2.0\n")
    assert CifDirectorySource(root).fingerprint() != second


@pytest.mark.integration
def test_reads_cifs_written_from_the_real_dataset(tmp_path: Path) -> None:
    path = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
    if not path.exists():
        pytest.skip(f"{path} not available")
    rows = (
        pq.ParquetFile(path).read_row_group(0, columns=["id", "structure", "e_form_eV_per_atom"]).slice(0, 20)
    )
    lines, files = [], {}
    for row in rows.to_pylist():
        files[f"{row['id']}.cif"] = Structure.from_dict(json.loads(row["structure"]))
        lines.append(f"{row['id']},{row['e_form_eV_per_atom']!r}")
    records = list(
        CifDirectorySource(make_dir(tmp_path / "d", "\n".join(lines), files), target_names=("e_form",))
    )
    assert [r.id for r in records] == [row["id"] for row in rows.to_pylist()]
    for record, row in zip(records, rows.to_pylist(), strict=True):
        assert isinstance(record, StructureRecord)
        assert record.targets["e_form"] == row["e_form_eV_per_atom"]
        assert record.structure.composition == files[f"{row['id']}.cif"].composition

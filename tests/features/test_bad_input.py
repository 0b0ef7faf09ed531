"""Bad input never crashes a run and never loses a row: each case lands in errors.parquet with a reason.

One run over a table holding every kind of bad input (plus valid edge cases that must be featurized);
each case is then checked by its own test.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

from hybridmat.data.source_strings import open_source
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore
from tests.conftest import perovskite, rocksalt


def _row(identifier: str, structure: Structure | str, e_form: float | None = -1.0,
         band_gap: float | None = 1.0) -> dict:
    text = structure if isinstance(structure, str) else json.dumps(structure.as_dict())
    return {"id": identifier, "structure": text, "e_form": e_form, "band_gap": band_gap}


def _inputs() -> list[dict]:
    good = perovskite()
    disordered = rocksalt()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    big = rocksalt(5.64, "Mg", "O")
    big.make_supercell([5, 5, 1])
    return [
        _row("good", good),
        _row("corrupt-cif", "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\nthis is not a cif"),
        _row("empty", ""),
        _row("disordered", disordered),
        _row("no-element-data", Structure(Lattice.cubic(4.0), ["Og", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])),
        _row("nan-target", good, e_form=float("nan")),
        _row("missing-target", good, band_gap=None),
        _row("good", good),  # a duplicate id: the first row wins
        _row("overlapping", Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])),
        _row("near-zero-volume", Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 0, 1e-4]]), ["Na", "Cl"],
                                           [[0, 0, 0], [0.5, 0.5, 0]])),
        _row("one-atom", Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])),
        _row("two-hundred-sites", big),
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[str], dict[str, dict]]:
    """Featurize the bad table once; return (manifest, kept ids, errors keyed by id)."""
    directory = tmp_path_factory.mktemp("bad")
    source = directory / "bad.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in _inputs()) + "\n")
    manifest = featurize_to_store(open_source(str(source)), directory / "store", spec=str(source),
                                  settings=FeaturizerSettings(composition="magpie"), shard_size=5, progress=False)
    store = FeatureStore(directory / "store")
    kept = store.read_table(["id"]).column("id").to_pylist()
    errors = {
        row["id"] + ("#duplicate" if row["stage"] == "duplicate" else ""): row
        for row in pq.read_table(directory / "store" / "errors.parquet").to_pylist()
    }
    return manifest, kept, errors


def test_every_input_is_a_row_or_an_error(run) -> None:
    manifest, kept, errors = run
    assert manifest["status"] == "complete"
    assert manifest["counts"]["inputs"] == len(_inputs()) == len(kept) + len(errors)
    assert all(row["reason"] and row["id"] for row in errors.values())


@pytest.mark.parametrize(
    ("case", "stage", "reason_part"),
    [
        ("corrupt-cif", "read", "CIF"),
        ("empty", "read", "empty"),
        ("disordered", "validate", "disordered"),
        ("no-element-data", "featurize", "Og"),
        ("nan-target", "targets", "e_form"),
        ("missing-target", "targets", "band_gap"),
        ("good#duplicate", "duplicate", "kept the first"),
        ("overlapping", "validate", "overlapping atoms"),
        ("near-zero-volume", "validate", "degenerate"),
    ],
)
def test_bad_input_lands_in_errors_with_reason(run, case: str, stage: str, reason_part: str) -> None:
    _, kept, errors = run
    assert case.split("#")[0] not in kept or case.endswith("#duplicate")
    assert errors[case]["stage"] == stage
    assert reason_part in errors[case]["reason"]


@pytest.mark.parametrize("case", ["good", "one-atom", "two-hundred-sites"])
def test_valid_edge_cases_are_featurized(run, case: str) -> None:
    _, kept, errors = run
    assert kept.count(case) == 1
    assert case not in errors

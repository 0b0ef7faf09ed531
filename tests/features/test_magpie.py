"""MagpieFeaturizer against matminer's ElementProperty.from_preset("magpie").

Parity criterion: |ours - matminer| / max(|ours|, |matminer|, 1e-8) <= 1e-6 for every value, i.e.
relative tolerance 1e-6 with an absolute floor of 1e-8 in the denominator (values near zero must
agree to 1e-14); NaN equals NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from matminer.featurizers.composition import ElementProperty
from pymatgen.core import Composition, DummySpecies, Lattice, Species, Structure

from hybridmat.features.elements import UnsupportedElementError, magpie_table
from hybridmat.features.magpie import MagpieFeaturizer

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MP_PARQUET = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
N_REAL = 3000

RTOL = 1e-6
FLOOR = 1e-8


def max_rel_diff(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest relative difference, NaN == NaN, floor 1e-8 in the denominator."""
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    assert ours.shape == reference.shape
    both_nan = np.isnan(ours) & np.isnan(reference)
    assert not np.any(np.isnan(ours) ^ np.isnan(reference)), "NaN in one output but not the other"
    scale = np.maximum(np.maximum(np.abs(ours), np.abs(reference)), FLOOR)
    rel = np.where(both_nan, 0.0, np.abs(ours - reference) / scale)
    return float(rel.max(initial=0.0))


def real_compositions(n: int) -> list[Composition]:
    """``n`` compositions spread evenly over mp_cgcnn36k (skips when ../shared/data is absent)."""
    if not MP_PARQUET.exists():
        pytest.skip(f"{MP_PARQUET} not found")
    formulas = pq.read_table(MP_PARQUET, columns=["formula"]).column("formula").to_pylist()
    step = len(formulas) // n
    return [Composition(f) for f in formulas[::step][:n]]


def small_compositions() -> list[Composition]:
    """Hand-picked cases: ties in the mode, species, fractions, a Structure's composition."""
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [
        Composition("Fe2O3"),
        Composition("NaCl"),
        Composition("LiFePO4"),
        Composition("Cu"),
        Composition({Species("Fe", 2): 1, Species("Fe", 3): 2, Species("O", -2): 4}),
        Composition({Species("Li", 1): 1, "Co": 1, Species("O", -2): 2}),
        Composition("Fe0.7Ni0.2Cr0.1"),
        Composition("Al0.5Cu0.25Zn0.25"),
        Composition({"Fe": 1.0, "O": 1.000001}),  # amounts np.isclose -> tie in the mode
        Composition({"Fe": 1.5e-8, "O": 2.2e-8}),  # tiny amounts: np.isclose atol makes a tie
        Composition("HeNe2Ar3"),
        Composition("RfDbSg"),
        nacl.composition,
        (nacl * (2, 1, 1)).composition,
    ]


def test_labels_match_matminer() -> None:
    assert MagpieFeaturizer().feature_labels() == ElementProperty.from_preset("magpie").feature_labels()


@pytest.mark.parametrize("impute_nan", [True, False])
def test_small_compositions_match_matminer(impute_nan: bool) -> None:
    comps = small_compositions()
    ours = MagpieFeaturizer(impute_nan=impute_nan).featurize_many(comps)
    reference = ElementProperty.from_preset("magpie", impute_nan=impute_nan).featurize_many(comps, pbar=False)
    assert ours.dtype == np.float64 and ours.shape == (len(comps), 132)
    assert max_rel_diff(ours, reference) <= RTOL
    assert np.isnan(ours).any() == (not impute_nan)  # He, Ne, Ar, Rf... miss data


def test_featurize_matches_featurize_many() -> None:
    featurizer = MagpieFeaturizer()
    comps = small_compositions()
    many = featurizer.featurize_many(comps)
    for comp, row in zip(comps, many):
        np.testing.assert_array_equal(featurizer.featurize(comp), row)


def test_mode_breaks_ties_with_smallest_value() -> None:
    featurizer = MagpieFeaturizer()
    labels = featurizer.feature_labels()
    values = featurizer.featurize(Composition("NaCl"))
    assert values[labels.index("MagpieData mode Number")] == 11.0


@pytest.mark.parametrize(
    ("composition", "needle"),
    [
        (Composition("OgO2"), "Og"),
        (Composition({DummySpecies("X", 1): 1, "O": 1}), "DummySpecies"),
        (Composition(), "empty"),
    ],
)
def test_unsupported_composition(composition: Composition, needle: str) -> None:
    featurizer = MagpieFeaturizer()
    reason = featurizer.unsupported_reason(composition)
    assert reason is not None and needle in reason
    with pytest.raises(UnsupportedElementError, match=needle) as info:
        featurizer.featurize_many([Composition("NaCl"), composition])
    assert "composition 1" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_supported_composition_has_no_reason() -> None:
    featurizer = MagpieFeaturizer()
    assert all(featurizer.unsupported_reason(c) is None for c in small_compositions())


def test_table_covers_elements_with_data() -> None:
    table = magpie_table()
    assert table.has_data[1:113].all() and not table.has_data[113:].any() and not table.has_data[0]
    assert not np.isnan(table.values[1:]).any()


@pytest.mark.integration
def test_real_compositions_match_matminer() -> None:
    comps = real_compositions(N_REAL)
    ours = MagpieFeaturizer().featurize_many(comps)
    matminer = ElementProperty.from_preset("magpie")
    matminer.set_n_jobs(1)
    reference = matminer.featurize_many(comps, pbar=False)
    assert len(comps) >= 2000
    assert max_rel_diff(ours, reference) <= RTOL

"""Ward2016Featurizer against matminer's MultipleFeaturizer of the same four featurizers.

Same parity criterion as tests/features/test_magpie.py: relative difference <= 1e-6 with an
absolute floor of 1e-8 in the denominator, NaN equals NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
from pymatgen.core import Composition, Species

from hybridmat.features.composition import Ward2016Featurizer
from hybridmat.features.elements import UnsupportedElementError
from tests.features.test_magpie import RTOL, max_rel_diff, real_compositions, small_compositions

N_REAL = 3000


def matminer_ward(impute_nan: bool = True) -> MultipleFeaturizer:
    """The reference: matminer's 145-feature Ward et al. (2016) set, single process."""
    featurizer = MultipleFeaturizer(
        [
            Stoichiometry(),
            ElementProperty.from_preset("magpie", impute_nan=impute_nan),
            ValenceOrbital(props=["frac"], impute_nan=impute_nan),
            IonProperty(fast=True, impute_nan=impute_nan),
        ]
    )
    featurizer.set_n_jobs(1)
    return featurizer


def ionic_compositions() -> list[Composition]:
    """Cases for the charge-balance check and ionic character."""
    return [
        Composition({Species("Fe", 3): 1, Species("O", -2): 1}),  # species, not neutral
        Composition({Species("Na", 1): 1, Species("Cl", -1): 1}),
        Composition("La0.5Sr0.5MnO3"),
        Composition("Li0.5CoO2"),
        Composition("BaTiO3"),
        Composition("Fe3O4"),
        Composition("CsKNaLiRbMgCl7"),
        Composition("Xe"),
    ]


def test_labels_match_matminer() -> None:
    labels = Ward2016Featurizer().feature_labels()
    assert labels == list(matminer_ward().feature_labels())
    assert len(labels) == 145


@pytest.mark.parametrize("impute_nan", [True, False])
def test_small_compositions_match_matminer(impute_nan: bool) -> None:
    comps = small_compositions() + ionic_compositions()
    ours = Ward2016Featurizer(impute_nan=impute_nan).featurize_many(comps)
    reference = matminer_ward(impute_nan).featurize_many(comps, pbar=False)
    assert ours.dtype == np.float64 and ours.shape == (len(comps), 145)
    assert max_rel_diff(ours, reference) <= RTOL


def test_single_element_is_neutral_and_not_ionic() -> None:
    featurizer = Ward2016Featurizer()
    values = dict(zip(featurizer.feature_labels(), featurizer.featurize(Composition("Cu"))))
    assert (values["compound possible"], values["max ionic char"], values["avg ionic char"]) == (1, 0, 0)
    assert values["0-norm"] == 1 and values["10-norm"] == pytest.approx(1.0)


def test_oxidation_state_species_weights_follow_matminer() -> None:
    """matminer weights ionic pairs by species fractions when all species carry oxidation states."""
    featurizer = Ward2016Featurizer()
    avg = featurizer.feature_labels().index("avg ionic char")
    species = Composition({Species("Fe", 2): 1, Species("Fe", 3): 2, Species("O", -2): 4})
    ours = featurizer.featurize_many([species, Composition("Fe3O4")])[:, avg]
    reference = np.asarray(matminer_ward().featurize_many([species], pbar=False), dtype=float)[0, avg]
    assert ours[0] == pytest.approx(reference, rel=RTOL)
    assert ours[0] != pytest.approx(ours[1], rel=RTOL)  # Fe2+ / Fe3+ split shifts the weights


def test_unsupported_composition_raises() -> None:
    featurizer = Ward2016Featurizer()
    assert featurizer.unsupported_reason(Composition("NaCl")) is None
    assert "Ts" in featurizer.unsupported_reason(Composition("TsCl"))
    with pytest.raises(UnsupportedElementError, match="Ts"):
        featurizer.featurize_many([Composition("TsCl")])


def test_citations_and_implementors() -> None:
    featurizer = Ward2016Featurizer()
    assert sorted(featurizer.citations()) == sorted(matminer_ward().citations())
    assert sorted(featurizer.implementors()) == sorted(matminer_ward().implementors())


@pytest.mark.integration
def test_real_compositions_match_matminer() -> None:
    comps = real_compositions(N_REAL)
    ours = Ward2016Featurizer().featurize_many(comps)
    reference = matminer_ward().featurize_many(comps, pbar=False)
    assert len(comps) >= 2000
    assert max_rel_diff(ours, reference) <= RTOL

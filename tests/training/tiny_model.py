"""A tiny registered model, a masked L1 loss and a small synthetic rocksalt dataset for trainer tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from hybridmat.data.records import StructureRecord
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.models.base import MODEL_REGISTRY, PropertyModel, build_model, register
from tests.conftest import rocksalt

NAME = "tiny_test_mean_pool"
TARGETS = ("e_form", "band_gap")
SETTINGS = FeaturizerSettings(composition="magpie", cutoff=6.0, max_neighbors=12, edge_basis_stop=8.0)  # 41 columns
CATIONS = ("Li", "Na", "K", "Rb", "Mg", "Ca", "Sr", "Ba")
ANIONS = ("F", "Cl", "Br", "O", "S")


class TinyMeanPool(PropertyModel):
    """Linear on mean-pooled atom features + mean-pooled Gaussian distances + scaled composition."""

    uses_composition = True

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: int = 16,
                 dropout: float = 0.0) -> None:
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden, dropout=dropout)
        self.atoms = nn.Linear(92, hidden)
        self.bonds = nn.Linear(41, hidden)
        self.composition = nn.Linear(composition_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_targets)

    def forward(self, batch: Any) -> Tensor:
        atoms = global_mean_pool(batch.x, batch.batch, size=batch.num_graphs)
        bonds = global_mean_pool(batch.edge_attr, batch.batch[batch.edge_index[1]], size=batch.num_graphs)
        hidden = self.atoms(atoms) + self.bonds(bonds) + self.composition(self.scaled_composition(batch))
        return self.head(self.dropout(torch.tanh(hidden)))


if NAME not in MODEL_REGISTRY:  # test modules may import this file more than once per session
    register(NAME)(TinyMeanPool)


class MaskedL1(nn.Module):
    """Mean over targets of the L1 error over labelled entries; ``learned`` adds uncertainty weights.

    Same call as ``hybridmat.models.losses.MultiTaskLoss`` (``loss(pred, target)``, NaN = missing), so
    most trainer tests do not depend on that loss's details; ``sign=-1`` maximises the error, which makes
    validation worse every epoch.
    """

    def __init__(self, n_targets: int = len(TARGETS), learned: bool = False, sign: float = 1.0) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(n_targets)) if learned else None
        self.sign = sign

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        labelled = ~torch.isnan(target)
        error = torch.where(labelled, (prediction - target.nan_to_num()).abs(), torch.zeros_like(prediction))
        per_target = error.sum(dim=0) / labelled.sum(dim=0).clamp_min(1)
        if self.log_var is not None:
            per_target = torch.exp(-self.log_var) * per_target + self.log_var
        return self.sign * per_target.mean()


@cache
def _features(n: int, seed: int) -> Any:
    """Featurized rocksalt cells; targets depend on the elements and the lattice constant."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        cation, anion = CATIONS[i % len(CATIONS)], ANIONS[(i // len(CATIONS)) % len(ANIONS)]
        a = float(rng.uniform(4.6, 6.4))
        structure = rocksalt(a, cation, anion)
        z_cat, z_an = structure.composition.elements[0].Z, structure.composition.elements[1].Z
        e_form = -0.05 * z_cat + 0.02 * z_an + 0.8 * (a - 5.5) ** 2 - 0.5 * a
        gap = np.nan if i % 5 == 0 else 8.0 - 1.2 * a + 0.03 * z_an  # every fifth label missing
        records.append(StructureRecord(f"rs-{i}", structure, {"e_form": e_form, "band_gap": gap}))
    batch, errors = featurize_records(records, SETTINGS, TARGETS)
    assert not errors, errors
    return batch


def rocksalt_dataset(n: int = 120, seed: int = 0, line_graph: bool = False) -> CrystalDataset:
    """A fresh dataset over ``n`` cached featurized rocksalt cells."""
    return CrystalDataset(_features(n, seed), TARGETS, line_graph=line_graph)


def split(dataset: CrystalDataset, n_val: int) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset]:
    """Last ``n_val`` items for validation, the rest for training."""
    n = len(dataset) - n_val
    return torch.utils.data.Subset(dataset, range(n)), torch.utils.data.Subset(dataset, range(n, n + n_val))


def tiny_model(seed: int = 0, dropout: float = 0.1) -> PropertyModel:
    """A seeded tiny model for the synthetic dataset (composition width of the magpie set)."""
    torch.manual_seed(seed)
    return build_model(NAME, n_targets=len(TARGETS), composition_dim=_features(8, 0).composition.shape[1],
                       dropout=dropout)

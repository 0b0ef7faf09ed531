"""Tiny featurized batches and the checks every torch model must pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from hybridmat.data.records import StructureRecord
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from tests.conftest import perovskite, rocksalt

SETTINGS = FeaturizerSettings(composition="magpie")
TARGETS = ("e_form", "band_gap")


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test with one intra-op thread (import this fixture into a test module to activate it).

    The graphs here are tiny, so extra threads only add synchronisation; on a shared 2-core machine the
    OpenMP barriers of a 2-thread pool made a 25-atom forward + backward take ~1 s instead of ~2 ms.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def wurtzite() -> Structure:
    """Hexagonal ZnO (4 sites, non-cubic, atoms in general positions along c)."""
    lattice = Lattice.hexagonal(3.25, 5.21)
    frac = [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]]
    return Structure(lattice, ["Zn", "Zn", "O", "O"], frac)


def structures() -> list[Structure]:
    """Four small, different crystals (5, 8, 4 and 8 sites)."""
    return [perovskite(), rocksalt(), wurtzite(), rocksalt(4.21, "Mg", "O")]


def make_batch(items: Sequence[Structure], labels: Sequence[Sequence[float]] | None = None) -> Batch:
    """Featurize ``items`` (Magpie + crystal graph) and collate them into one PyG batch."""
    labels = labels or [(-1.0 - 0.1 * i, 0.5 * i) for i in range(len(items))]
    records = [
        StructureRecord(f"s-{i}", s, dict(zip(TARGETS, y, strict=True)))
        for i, (s, y) in enumerate(zip(items, labels, strict=True))
    ]
    features, errors = featurize_records(records, SETTINGS, TARGETS)
    assert not errors, errors
    dataset = CrystalDataset(features, list(TARGETS))
    return next(iter(DataLoader(dataset, batch_size=len(dataset))))


def permuted(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal with its sites listed in a random order."""
    order = np.random.default_rng(seed).permutation(len(structure))
    return Structure.from_sites([structure[int(i)] for i in order])


def translated(structure: Structure, shift: Sequence[float] = (0.37, -1.21, 2.05)) -> Structure:
    """The same crystal with every atom moved by one Cartesian vector (Å), wrapped into the cell."""
    out = structure.copy()
    out.translate_sites(list(range(len(out))), shift, frac_coords=False, to_unit_cell=True)
    return out


def prepare(model: nn.Module, batch: Batch) -> nn.Module:
    """Fit composition scaling, run one training-mode pass (fills batch-norm statistics), switch to eval."""
    if getattr(model, "uses_composition", False):
        model.fit_composition_scaling(batch.composition)
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


def assert_output_shape(model: nn.Module, batch: Batch, n_targets: int) -> None:
    out = model(batch)
    assert out.shape == (batch.num_graphs, n_targets)
    assert torch.isfinite(out).all()


def assert_rebuilds_from_config(model: nn.Module, name: str, batch: Batch) -> None:
    """``build_model(name, **model.config)`` plus the state dict predicts exactly what ``model`` does."""
    from hybridmat.models.base import build_model

    rebuilt = build_model(name, **model.config)
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(batch), model.eval()(batch))


def assert_all_parameters_get_gradients(model: nn.Module, batch: Batch) -> None:
    """One backward in training mode reaches every trainable parameter with a finite gradient."""
    model.train()
    model.zero_grad()
    model(batch).square().sum().backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} received no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


def assert_invariant(
    model: nn.Module, transform: Callable[[Structure], Structure], atol: float = 1e-5
) -> None:
    """Eval-mode predictions do not change when every structure is replaced by ``transform(structure)``."""
    originals = structures()
    moved = [transform(s) for s in originals]
    assert all(not np.allclose(a.cart_coords, b.cart_coords) for a, b in zip(originals, moved, strict=True))
    batch, transformed = make_batch(originals), make_batch(moved)
    prepare(model, batch)
    with torch.no_grad():
        expected = model(batch)
        actual = model(transformed)
    assert (expected[1:] - expected[:1]).abs().max() > 1e-4, "the model is constant: the check is vacuous"
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)

"""The multi-task network with a GATv2 trunk, and its attention block."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from pymatgen.core import Structure

from hybridmat.models.base import build_model
from hybridmat.models.layers.gatv2_block import GATv2Block
from hybridmat.models.losses import MultiTaskLoss
from hybridmat.models.multitask_gat import MultiTaskGAT
from tests.models.helpers import (
    assert_all_parameters_get_gradients,
    assert_invariant,
    assert_output_shape,
    assert_rebuilds_from_config,
    make_batch,
    permuted,
    prepare,
    single_thread,  # noqa: F401  (autouse fixture)
    structures,
    translated,
)

SMALL = {"hidden": 16, "n_layers": 2, "heads": 2, "head_hidden": 16}


def build(n_targets: int = 3) -> MultiTaskGAT:
    torch.manual_seed(0)
    model = build_model("multitask_gat", n_targets=n_targets, **SMALL)
    assert isinstance(model, MultiTaskGAT)
    return model


def test_block_keeps_periodic_self_loops_and_uses_bond_features() -> None:
    """Bonds i -> i (to periodic images) reach the attention, and the bond features change its weights."""
    torch.manual_seed(0)
    block = GATv2Block(4, edge_dim=3, heads=2).eval()
    x = torch.randn(2, 4)
    edge_index = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1]])  # atom 0: two images of itself and atom 1
    edge_attr = torch.randn(4, 3)
    out = block(x, edge_index, edge_attr)
    no_bonds = block(x, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3))
    assert not torch.allclose(out[1], no_bonds[1])  # atom 1's only bond is to its own image
    other_bonds = edge_attr.clone()
    other_bonds[2] += 1.0  # only the bond 1 -> 0 changes length
    assert not torch.allclose(block(x, edge_index, other_bonds)[0], out[0])
    torch.testing.assert_close(block(x, edge_index, other_bonds)[1], out[1])
    block.reset_parameters()
    assert not torch.allclose(block(x, edge_index, edge_attr), out)
    with pytest.raises(ValueError, match="divisible"):
        GATv2Block(10, edge_dim=3, heads=4)


def test_output_shape_one_head_per_target() -> None:
    model = build(3)
    assert len(model.head.heads) == 3 and not model.needs_line_graph
    batch = make_batch(structures())
    assert_output_shape(prepare(model, batch), batch, 3)
    assert model.embed(batch).shape == (4, 16)
    assert_rebuilds_from_config(model, "multitask_gat", batch)


def test_gradients_reach_every_parameter() -> None:
    assert_all_parameters_get_gradients(build(3), make_batch(structures()))


@pytest.mark.parametrize("transform", [permuted, translated], ids=["atom_order", "translation"])
def test_invariant(transform: Callable[[Structure], Structure]) -> None:
    assert_invariant(build(2), transform)


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_masked_multitask_loss_trains_trunk_and_heads(weighting: str) -> None:
    """With a missing label, the loss stays finite and the unlabelled target's head gets no gradient."""
    model = build(2)
    batch = make_batch(structures(), labels=[(-1.0, math.nan), (-2.0, 1.0), (-0.5, 0.2), (-1.5, math.nan)])
    batch.y[:, 1] = math.nan  # the second target is unlabelled in this whole batch
    criterion = MultiTaskLoss(2, weighting=weighting)
    model.train()
    loss = criterion(model(batch), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or (p.grad == 0).all() for p in model.head.heads[1].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.heads[0].parameters())
    assert model.embedding.weight.grad.abs().sum() > 0

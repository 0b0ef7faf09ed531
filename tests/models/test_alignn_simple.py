"""The simplified ALIGNN (atom graph only) and its MLP message-passing layer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pymatgen.core import Structure

from hybridmat.models.alignn_simple import SimpleALIGNN
from hybridmat.models.base import build_model
from hybridmat.models.layers.mlp_message import MLPMessageConv
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

SMALL = {"hidden": 32, "embedding": 16, "n_layers": 2}


def build(n_targets: int = 2) -> SimpleALIGNN:
    torch.manual_seed(0)
    model = build_model("alignn_simple", n_targets=n_targets, **SMALL)
    assert isinstance(model, SimpleALIGNN)
    return model


def test_layer_matches_loop_formula() -> None:
    """The vectorised layer equals the docstring formula evaluated edge by edge."""
    torch.manual_seed(0)
    f, n = 6, 5
    conv = MLPMessageConv(f).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        conv.bn.running_mean.uniform_(-0.5, 0.5)
        conv.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(n, f)
    edge_index = torch.tensor([[1, 2, 3, 0, 4, 4, 2], [0, 0, 0, 1, 1, 2, 2]])  # 2 -> 2: a periodic image
    e = torch.randn(edge_index.shape[1], f)

    aggregated = torch.zeros(n, f)
    for k, (j, i) in enumerate(edge_index.t().tolist()):
        aggregated[i] += conv.message_out(F.silu(conv.message_in(torch.cat([x[i], x[j], e[k]]))))
    update = conv.update_out(F.silu(conv.update_in(torch.cat([x, aggregated], dim=1))))
    expected = x + F.silu(conv.bn(update))
    torch.testing.assert_close(conv(x, edge_index, e), expected)
    torch.testing.assert_close(expected[3:], x[3:] + F.silu(conv.bn(conv.update_out(  # no neighbours: a = 0
        F.silu(conv.update_in(torch.cat([x[3:], torch.zeros(2, f)], dim=1)))))))


def test_layer_gradients_match_finite_differences_and_reset() -> None:
    torch.manual_seed(0)
    conv = MLPMessageConv(3).double()  # training mode: batch norm over the 4 nodes
    edge_index = torch.tensor([[1, 2, 3, 0, 0, 2], [0, 0, 0, 1, 2, 1]])
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, e: conv(x, edge_index, e), (x, e))
    conv.message_in.weight.data.zero_()
    conv.reset_parameters()
    assert conv.message_in.weight.abs().sum() > 0


def test_output_shape_and_registry() -> None:
    model = build(2)
    assert not model.needs_line_graph and not model.uses_composition
    batch = make_batch(structures())
    assert_output_shape(prepare(model, batch), batch, 2)
    assert model.embed(batch).shape == (4, 32)
    assert_rebuilds_from_config(model, "alignn_simple", batch)


def test_gradients_reach_every_parameter() -> None:
    assert_all_parameters_get_gradients(build(2), make_batch(structures()))


@pytest.mark.parametrize("transform", [permuted, translated], ids=["atom_order", "translation"])
def test_invariant(transform: Callable[[Structure], Structure]) -> None:
    assert_invariant(build(2), transform)


def test_rejects_no_layers() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        SimpleALIGNN(n_layers=0)

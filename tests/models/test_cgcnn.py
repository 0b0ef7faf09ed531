"""CGCNN and its convolution: shapes, gradients, symmetry, and the reference code's operator order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridmat.models.base import build_model
from hybridmat.models.cgcnn import CGCNN
from hybridmat.models.layers import CGConv
from tests.models.helpers import (
    assert_all_parameters_get_gradients,
    assert_invariant,
    assert_output_shape,
    make_batch,
    permuted,
    prepare,
    single_thread,  # noqa: F401  (autouse fixture)
    structures,
    translated,
)


def reference_conv(
    layer: CGConv, x: torch.Tensor, nbr_idx: torch.Tensor, nbr_fea: torch.Tensor
) -> torch.Tensor:
    """``ConvLayer.forward`` of txie-93/cgcnn on dense (N, M) neighbour lists, with ``layer``'s weights."""
    n, m = nbr_idx.shape
    total = torch.cat([x.unsqueeze(1).expand(n, m, x.size(1)), x[nbr_idx], nbr_fea], dim=2)
    gated = layer.bn_edge(layer.lin(total).view(n * m, -1)).view(n, m, -1)
    nbr_filter, nbr_core = gated.chunk(2, dim=2)
    summed = layer.bn_node((torch.sigmoid(nbr_filter) * F.softplus(nbr_core)).sum(dim=1))
    return F.softplus(x + summed)


@pytest.mark.parametrize("training", [True, False])
def test_cgconv_matches_reference_code(training: bool) -> None:
    torch.manual_seed(0)
    n, m, c, d = 7, 4, 8, 5
    layer = CGConv(c, d)
    with torch.no_grad():  # non-trivial batch-norm affine parameters and running statistics
        for bn in (layer.bn_edge, layer.bn_node):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
    layer.train(training)
    x, nbr_idx, nbr_fea = torch.randn(n, c), torch.randint(0, n, (n, m)), torch.randn(n, m, d)
    edge_index = torch.stack([nbr_idx.reshape(-1), torch.arange(n).repeat_interleave(m)])
    expected = reference_conv(layer, x, nbr_idx, nbr_fea)
    actual = layer(x, edge_index, nbr_fea.reshape(n * m, d))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_cgconv_isolated_atom_and_reset() -> None:
    torch.manual_seed(0)
    layer = CGConv(4, 3).eval()
    x = torch.randn(3, 4)
    edge_index = torch.tensor([[0, 1], [1, 0]])  # atom 2 has no neighbours
    out = layer(x, edge_index, torch.randn(2, 3))
    torch.testing.assert_close(out[2], F.softplus(x[2] + layer.bn_node.bias))  # BN_2(0) in eval = bias
    layer.lin.weight.data.zero_()
    layer.reset_parameters()
    assert layer.lin.weight.abs().sum() > 0


def test_output_shape_and_registry() -> None:
    torch.manual_seed(0)
    model = build_model("cgcnn", n_targets=2)
    assert isinstance(model, CGCNN) and model.config["hidden"] == 64 and model.config["n_conv"] == 3
    batch = make_batch(structures())
    assert_output_shape(prepare(model, batch), batch, 2)
    assert model.embed(batch).shape == (4, 64)
    rebuilt = build_model("cgcnn", **model.config)
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(batch), model(batch))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    assert_all_parameters_get_gradients(CGCNN(n_targets=2, n_head_layers=2), make_batch(structures()))


def test_invariant_to_atom_order() -> None:
    torch.manual_seed(0)
    assert_invariant(CGCNN(n_targets=2), permuted)


def test_invariant_to_translation() -> None:
    torch.manual_seed(0)
    assert_invariant(CGCNN(n_targets=2), translated)

"""ALIGNN and its edge-gated graph convolution on a few hand-built crystals."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import hybridmat.models.alignn  # noqa: F401  (registers "alignn")
from hybridmat.data.records import StructureRecord
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.models.alignn import ALIGNN
from hybridmat.models.base import build_model
from hybridmat.models.layers.eggc import EdgeGatedGraphConv
from tests.conftest import perovskite, rocksalt

SETTINGS = FeaturizerSettings(composition="magpie")
SMALL = {"hidden": 32, "embedding": 16, "alignn_layers": 1, "gcn_layers": 1}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one thread: BatchNorm1d always opens an OpenMP region, which costs ~70 ms per call when
    the cores are busy; on these tiny graphs one thread is faster anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def diamond_si() -> Structure:
    """Primitive diamond Si (2 sites)."""
    lattice = Lattice.from_parameters(3.84, 3.84, 3.84, 60, 60, 60)
    return Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25] * 3])


def bcc_fe() -> Structure:
    """Primitive bcc Fe (1 site, 8 + 6 neighbours kept by the tie policy)."""
    a = 2.87
    return Structure(Lattice(np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) * a / 2), ["Fe"], [[0, 0, 0]])


def structures() -> list[Structure]:
    """NaCl (8 sites), Si (2), SrTiO3 (5), Fe (1)."""
    return [rocksalt(), diamond_si(), perovskite(), bcc_fe()]


def make_batch(structs: list[Structure], targets: list[float] | None = None) -> Batch:
    """Featurize ``structs`` and collate them into one PyG batch with a line graph."""
    targets = targets or [0.0] * len(structs)
    records = [StructureRecord(f"s-{i}", s, {"e_form": t}) for i, (s, t) in enumerate(zip(structs, targets))]
    batch, errors = featurize_records(records, SETTINGS, ("e_form",))
    assert not errors
    dataset = CrystalDataset(batch, ["e_form"], line_graph=True)
    return next(iter(DataLoader(dataset, batch_size=len(dataset))))


def test_eggc_matches_loop_formula() -> None:
    """The vectorised layer equals the docstring formula evaluated edge by edge."""
    torch.manual_seed(0)
    f, n = 8, 5
    conv = EdgeGatedGraphConv(f).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for bn in (conv.bn_nodes, conv.bn_edges):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(n, f)
    edge_index = torch.tensor([[1, 2, 3, 0, 4, 4], [0, 0, 0, 1, 1, 2]])  # node 3 and 4 receive nothing
    e = torch.randn(edge_index.shape[1], f)
    x_out, e_out = conv(x, edge_index, e)

    weights, biases = conv.node_linear.weight.split(f), conv.node_linear.bias.split(f)
    b, v, a, u = (x @ w.t() + bias for w, bias in zip(weights, biases))
    c = conv.edge_linear.weight
    num, den = torch.zeros(n, f), torch.zeros(n, f)
    gates = []
    for k, (j, i) in enumerate(edge_index.t().tolist()):
        gate = a[i] + b[j] + c @ e[k]
        gates.append(gate)
        num[i] += torch.sigmoid(gate) * v[j]
        den[i] += torch.sigmoid(gate)
    expected_x = x + torch.nn.functional.silu(conv.bn_nodes(u + num / (den + conv.eps)))
    expected_e = e + torch.nn.functional.silu(conv.bn_edges(torch.stack(gates)))
    torch.testing.assert_close(x_out, expected_x)
    torch.testing.assert_close(e_out, expected_e)
    assert torch.equal(EdgeGatedGraphConv(f, update_edges=False)(x, edge_index, e)[1], e)


def test_eggc_gradients_match_finite_differences() -> None:
    torch.manual_seed(0)
    conv = EdgeGatedGraphConv(3).double()  # training mode: batch norm over the 6 edges / 4 nodes
    edge_index = torch.tensor([[1, 2, 3, 0, 0, 2], [0, 0, 0, 1, 2, 1]])
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, e: conv(x, edge_index, e), (x, e))


def test_output_shape_and_config() -> None:
    model = build_model("alignn", n_targets=2, composition_dim=132, **SMALL)
    assert isinstance(model, ALIGNN) and model.needs_line_graph and not model.uses_composition
    assert model.config["hidden"] == 32 and model.config["distance_bins"] == 80
    batch = make_batch(structures())
    model.eval()
    assert model(batch).shape == (4, 2)
    assert model.embed(batch).shape == (4, 32)
    assert build_model("alignn", **model.config).config == model.config


@pytest.mark.parametrize("config", [{}, {**SMALL, "alignn_layers": 2, "gcn_layers": 0}])
def test_gradients_reach_every_parameter(config: dict) -> None:
    torch.manual_seed(0)
    model = ALIGNN(n_targets=2, **config)
    model.train()
    batch = make_batch(structures())
    model(batch).pow(2).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_invariant_to_atom_order_and_translation() -> None:
    torch.manual_seed(0)
    model = ALIGNN(n_targets=2, hidden=64, alignn_layers=2, gcn_layers=2)
    model.train()
    base = structures()
    model(make_batch(base))  # non-trivial batch-norm running statistics
    model.eval()

    permuted = [Structure.from_sites(list(reversed(s.sites))) for s in base]
    translated = [s.copy() for s in base]
    for s in translated:
        s.translate_sites(list(range(len(s))), [0.31, -0.17, 0.42], frac_coords=True)
    with torch.no_grad():
        reference = model(make_batch(base))
        torch.testing.assert_close(model(make_batch(permuted)), reference, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(make_batch(translated)), reference, atol=1e-5, rtol=0)


def test_small_model_overfits_four_structures() -> None:
    torch.manual_seed(0)
    model = ALIGNN(n_targets=1, **SMALL)
    model.train()
    batch = make_batch(structures(), [1.0, -1.0, 0.5, 2.0])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(batch), batch.y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_rejects_no_layers_and_missing_line_graph() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        ALIGNN(alignn_layers=0, gcn_layers=0)
    with pytest.raises(TypeError):
        build_model("alignn", hiden=32)  # a misspelt hyper-parameter is an error, not ignored
    batch = make_batch(structures()[:2])
    del batch.line_edge_index
    with pytest.raises(ValueError, match="line_graph=True"):
        ALIGNN(**SMALL)(batch)

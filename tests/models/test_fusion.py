"""Early and attention fusion: shapes, gradients, symmetry, composition scaling and the gate."""

from __future__ import annotations

import pytest
import torch

from hybridmat.models.base import build_model
from hybridmat.models.fusion import AttentionFusion, EarlyFusion, SourceGate
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

MODELS = ["early_fusion", "attention_fusion"]
N_MAGPIE = 132


def build(name: str, n_targets: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, n_targets=n_targets, composition_dim=N_MAGPIE)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name: str) -> None:
    model = build(name)
    assert model.uses_composition
    batch = make_batch(structures())
    assert_output_shape(prepare(model, batch), batch, 2)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = build(name)
    batch = make_batch(structures())
    model.fit_composition_scaling(batch.composition)
    assert_all_parameters_get_gradients(model, batch)


@pytest.mark.parametrize("name", MODELS)
def test_invariant_to_atom_order(name: str) -> None:
    assert_invariant(build(name), permuted)


@pytest.mark.parametrize("name", MODELS)
def test_invariant_to_translation(name: str) -> None:
    assert_invariant(build(name), translated)


@pytest.mark.parametrize("name", MODELS)
def test_needs_composition_dim(name: str) -> None:
    with pytest.raises(ValueError, match="composition_dim"):
        build_model(name, n_targets=1)


def test_early_fusion_reads_standardised_composition() -> None:
    model = build("early_fusion")
    assert isinstance(model, EarlyFusion)
    batch = make_batch(structures())
    model.fit_composition_scaling(batch.composition)
    scaled = model.scaled_composition(batch)
    varying = batch.composition.std(dim=0) > 0
    assert scaled[:, varying].mean(dim=0).abs().max() < 1e-5
    model.eval()
    with torch.no_grad():
        before = model(batch)
        batch.composition = batch.composition.clone()
        batch.composition[0] += 5 * model.composition_std
        assert not torch.allclose(model(batch)[0], before[0])
        torch.testing.assert_close(model(batch)[1:], before[1:])


@pytest.mark.parametrize("name", MODELS)
def test_composition_beyond_the_training_range_is_clipped_to_it(name: str) -> None:
    model = build(name)
    batch = make_batch(structures())
    model.fit_composition_scaling(batch.composition)
    model.eval()
    far, at_edge = batch.clone(), batch.clone()
    far.composition = batch.composition.clone()
    far.composition[0] += 1e6 * model.composition_std  # far outside (Co2NOF among Castelli was 390,000 σ out)
    at_edge.composition = batch.composition.clone()
    at_edge.composition[0] = model.composition_max
    with torch.no_grad():
        torch.testing.assert_close(model(far), model(at_edge))
        assert model.scaled_composition(far).abs().max() < 10


def test_checkpoints_without_a_training_range_load_unclipped() -> None:
    model = build("early_fusion")
    batch = make_batch(structures())
    model.fit_composition_scaling(batch.composition)
    state = {k: v for k, v in model.state_dict().items() if k not in ("composition_min", "composition_max")}
    older = build("early_fusion")
    older.load_state_dict(state)  # strict: the missing range is filled in, unbounded
    assert torch.isinf(older.composition_min).all() and torch.isinf(older.composition_max).all()
    torch.testing.assert_close(older.composition_mean, model.composition_mean)


def test_attention_gate_is_a_per_sample_softmax() -> None:
    model = build("attention_fusion")
    assert isinstance(model, AttentionFusion)
    batch = make_batch(structures())
    prepare(model, batch)
    with torch.no_grad():
        pred, gate = model.forward_with_gate(batch)
    assert gate.shape == (4, 2) and (gate >= 0).all()
    torch.testing.assert_close(gate.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(pred, model(batch))


def test_source_gate_mixes_the_two_sources() -> None:
    torch.manual_seed(0)
    gate = SourceGate(3)
    h_comp, h_graph = torch.randn(5, 3), torch.randn(5, 3)
    fused, weights = gate(h_comp, h_graph)
    torch.testing.assert_close(fused, weights[:, :1] * h_comp + weights[:, 1:] * h_graph)
    with torch.no_grad():  # a gate saturated towards the graph source returns the graph features
        gate.score[-1].weight.zero_()
        gate.score[-1].bias.copy_(torch.tensor([-50.0, 50.0]))
    torch.testing.assert_close(gate(h_comp, h_graph)[0], h_graph)

"""Multi-task CGCNN and the masked multi-task loss."""

from __future__ import annotations

import math

import pytest
import torch

from hybridmat.models.base import build_model
from hybridmat.models.losses import MultiTaskLoss
from hybridmat.models.multitask import MultiTaskCGCNN
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

NAN = math.nan


def build(n_targets: int = 3) -> MultiTaskCGCNN:
    torch.manual_seed(0)
    model = build_model("multitask", n_targets=n_targets)
    assert isinstance(model, MultiTaskCGCNN)
    return model


def test_output_shape_one_head_per_target() -> None:
    model = build(3)
    assert len(model.head.heads) == 3
    batch = make_batch(structures())
    assert_output_shape(prepare(model, batch), batch, 3)


def test_gradients_reach_every_parameter() -> None:
    assert_all_parameters_get_gradients(build(3), make_batch(structures()))


def test_invariant_to_atom_order() -> None:
    assert_invariant(build(2), permuted)


def test_invariant_to_translation() -> None:
    assert_invariant(build(2), translated)


@pytest.mark.parametrize("regression", ["l1", "l2"])
def test_half_missing_column_equals_loss_on_labelled_rows(regression: str) -> None:
    torch.manual_seed(0)
    pred = torch.randn(6, 2, requires_grad=True)
    target = torch.randn(6, 2)
    target[::2, 1] = NAN
    loss = MultiTaskLoss(2, weights=[1.0, 0.5], regression=regression)(pred, target)
    power = 1 if regression == "l1" else 2
    first = (pred[:, 0] - target[:, 0]).abs().pow(power).mean()
    second = (pred[1::2, 1] - target[1::2, 1]).abs().pow(power).mean()
    torch.testing.assert_close(loss, first + 0.5 * second)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[::2, 1] == 0).all()


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_all_missing_column_gives_finite_loss_and_gradients(weighting: str) -> None:
    torch.manual_seed(0)
    pred = torch.randn(4, 2, requires_grad=True)
    target = torch.randn(4, 2)
    target[:, 1] = NAN
    criterion = MultiTaskLoss(2, weighting=weighting)
    loss = criterion(pred, target)
    # log-variances start at 0, so both weightings reduce to the first target's L1 here
    torch.testing.assert_close(loss, (pred[:, 0] - target[:, 0]).abs().mean())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[:, 1] == 0).all()
    if criterion.log_vars is not None:  # a target without labels leaves its log-variance alone
        assert criterion.log_vars.grad[1] == 0 and criterion.log_vars.grad[0] != 0
    assert MultiTaskLoss(2, weighting=weighting)(pred, torch.full((4, 2), NAN)) == 0


def test_single_target_fixed_weight_is_masked_l1() -> None:
    pred = torch.tensor([[1.0], [2.0], [3.0]])
    target = torch.tensor([[0.0], [NAN], [1.0]])
    torch.testing.assert_close(MultiTaskLoss()(pred, target), torch.tensor(1.5))


def test_uncertainty_weighting_formula_and_gradients() -> None:
    torch.manual_seed(0)
    model = build(2)
    criterion = MultiTaskLoss(2, weighting="uncertainty")
    with torch.no_grad():
        criterion.log_vars.copy_(torch.tensor([0.3, -0.2]))
    batch = make_batch(structures(), labels=[(-1.0, NAN), (-2.0, 1.0), (-0.5, 0.2), (-1.5, NAN)])
    model.train()
    pred = model(batch)
    loss = criterion(pred, batch.y)
    losses, counts = criterion.per_target(pred, batch.y)
    assert counts.tolist() == [4, 2]
    expected = sum(torch.exp(-s) * value + s for s, value in zip(criterion.log_vars, losses))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert criterion.log_vars.grad is not None and (criterion.log_vars.grad != 0).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_rejects_bad_configuration_and_shapes() -> None:
    with pytest.raises(ValueError, match="weights"):
        MultiTaskLoss(2, weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        MultiTaskLoss(2, weighting="uncertainty", weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskLoss(2, weighting="gradnorm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        MultiTaskLoss(2)(torch.zeros(3, 2), torch.zeros(3, 1))

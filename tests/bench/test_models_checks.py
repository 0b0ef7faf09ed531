"""``bench models``' ALIGNN-vs-CGCNN check at equal wall time, on hand-made validation curves."""

from __future__ import annotations

import pytest

from hybridmat.bench.models import equal_wall_time_check
from hybridmat.workflows.fitting import Fitted, validation_curve


def _fitted(name: str, curve: list[list[float]]) -> Fitted:
    return Fitted(name, lambda dataset: (None, None), curve[-1][0], 1, {"curves": [curve]})


def test_validation_curve_accumulates_epoch_seconds() -> None:
    history = [{"seconds": 2.0, "val_mae": 0.3}, {"seconds": 3.0, "val_mae": 0.2}, {"seconds": 1.0}]
    assert validation_curve(history) == [[2.0, 0.3], [5.0, 0.2]]


@pytest.mark.parametrize(("alignn_curve", "holds", "mae"), [
    ([[40.0, 0.15], [80.0, 0.09], [200.0, 0.05]], False, 0.09),  # better only after CGCNN's 100 s
    ([[40.0, 0.15], [90.0, 0.07], [200.0, 0.05]], True, 0.07),
    ([[150.0, 0.05]], False, float("nan")),  # not one epoch within the budget
])
def test_alignn_gets_only_cgcnns_training_time(alignn_curve: list[list[float]], holds: bool, mae: float) -> None:
    cgcnn = [[25.0, 0.2], [50.0, 0.1], [100.0, 0.08]]
    check = equal_wall_time_check({"cgcnn": _fitted("cgcnn", cgcnn), "alignn": _fitted("alignn", alignn_curve)})
    assert check is not None and check["holds"] is holds and check["parents"] == {"cgcnn": 0.08}
    assert check["mae"] == mae or (mae != mae and check["mae"] != check["mae"])
    assert equal_wall_time_check({"cgcnn": _fitted("cgcnn", cgcnn)}) is None

"""``hybridmat calibrate``: fit an ensemble's uncertainty calibration and domain model, store them beside it.

The domain model is fitted on the training split's compositions, its threshold and the conformal calibration on
the validation split's predictions; the test split stays untouched for ``hybridmat bench calibration``. The
model directory gets ``domain.npz`` (arrays, no pickle), ``calibration.json`` (the calibration, the members'
content hash it belongs to, what it was fitted on) and a calibration section in its ``MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.features.featurizer import composition_featurizer, featurize_records
from hybridmat.training.calibration import (
    INTERVAL_LEVEL,
    ONE_SIGMA,
    EnsembleCalibration,
    coverage,
    fit_target_calibration,
)
from hybridmat.training.domain import DEFAULT_QUANTILE, fit_domain_model
from hybridmat.workflows.predict import (
    CALIBRATION_FILE,
    DOMAIN_FILE,
    WEIGHTS_FILE,
    ModelFiles,
    Predictor,
    load_predictor,
    model_files,
)


@dataclass(frozen=True)
class LabelledPredictions:
    """Raw ensemble predictions of a source with its labels and composition vectors, row-aligned."""

    ids: list[str]
    mean: np.ndarray
    std: np.ndarray
    labels: np.ndarray
    composition: np.ndarray
    errors: int


def labelled_predictions(predictor: Predictor, records: Any, chunk_size: int = 1000) -> LabelledPredictions:
    """Predict every record (raw spread, no calibration); labels are NaN where a record has none."""
    names = predictor.target_names
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "labels": [], "composition": []}
    errors = 0
    items = iter(records)
    while chunk := list(itertools.islice(items, chunk_size)):
        good = [r for r in chunk if isinstance(r, StructureRecord)]
        batch, failed = featurize_records(good, predictor.settings, names)
        errors += len(chunk) - len(good) + len(failed)
        mean, std = predictor.raw_predict(batch)
        ids += batch.ids
        parts["mean"].append(mean)
        parts["std"].append(std)
        parts["labels"].append(np.stack([batch.targets[name] for name in names],
                                        axis=1).reshape(len(batch), len(names)))
        parts["composition"].append(batch.composition)
    if not ids:
        raise ValueError("no structure of the source could be predicted")
    return LabelledPredictions(ids, *(np.concatenate(parts[key]) for key in ("mean", "std", "labels", "composition")),
                               errors=errors)


def training_compositions(records: Any, composition: str) -> np.ndarray:
    """Composition vectors of the records the featurizer supports (others cannot be predicted anyway)."""
    featurizer = composition_featurizer(composition)
    compositions = [r.structure.composition for r in records if not isinstance(r, RecordError)]
    return featurizer.featurize_many([c for c in compositions if featurizer.unsupported_reason(c) is None])


def calibrate_model(model_dir: Path, data: Path, split: str = "full",
                    domain_quantile: float = DEFAULT_QUANTILE, command: str = "hybridmat calibrate") -> dict[str, Any]:
    """Fit and write the calibration of the ensemble in ``model_dir`` from ``data``'s ``split``; the record."""
    from hybridmat.data.source_strings import open_source
    from hybridmat.workflows.export import write_calibration_section

    model_dir = Path(model_dir)
    found = model_files(model_dir)
    if found.weights is None and (model_dir / WEIGHTS_FILE).is_file():
        raise ValueError(found.stale)
    members = ModelFiles(found.members, weights=found.weights)  # the members as combined, without the old fit
    predictor = load_predictor(members)
    train = training_compositions(open_source(f"{data}?split={split}/train"), predictor.settings.composition)
    val = labelled_predictions(predictor, open_source(f"{data}?split={split}/val"))
    domain = fit_domain_model(train, predictor.settings.composition)
    val_scores = domain.score(val.composition)
    domain = domain.with_threshold(val_scores, domain_quantile)
    calibration = EnsembleCalibration(
        tuple(fit_target_calibration(name, val.labels[:, t], val.mean[:, t], val.std[:, t], val_scores,
                                     (domain.threshold,)) for t, name in enumerate(predictor.target_names)),
        fitted_on=f"{Path(data).name}?split={split}/val")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **domain.to_dict())
    domain_bytes = buffer.getvalue()
    record = {
        "members_id": members.members_id, "domain_sha256": hashlib.sha256(domain_bytes).hexdigest(),
        "command": command, "data": Path(data).name, "split": split,
        "domain": {"features": f"{domain.composition} composition, standardised, {domain.components.shape[1]} "
                               f"principal axes", "k": domain.k, "reference_rows": len(domain.reference),
                   "train_rows": len(train), "threshold": domain.threshold, "in_domain_quantile": domain_quantile},
        "validation": _validation_coverage(calibration, val, val_scores),
        "calibration": calibration.to_dict(),
    }
    atomic_write_bytes(model_dir / DOMAIN_FILE, domain_bytes)
    atomic_write_bytes(model_dir / CALIBRATION_FILE, json.dumps(record, indent=2).encode())
    if (model_dir / "MODEL_CARD.md").is_file():
        write_calibration_section(model_dir / "MODEL_CARD.md", record)
    return record


def _validation_coverage(calibration: EnsembleCalibration, val: LabelledPredictions,
                         scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Per target: rows, raw ±1 std coverage, calibrated 68 % and 90 % coverage on the fitting rows."""
    result = {}
    for t, target in enumerate(calibration.targets):
        y, mean, std = val.labels[:, t], val.mean[:, t], val.std[:, t]
        result[target.target] = {
            "rows": int(np.isfinite(y).sum()),
            "raw_1std": coverage(y, mean - std, mean + std),
            "calibrated_68": coverage(y, *target.interval(mean, std, ONE_SIGMA, scores)),
            "calibrated_90": coverage(y, *target.interval(mean, std, INTERVAL_LEVEL, scores)),
        }
    return result

"""Matbench protocol: for each fold, train on the fold's train+val data, predict its test data, and
``task.record`` the predictions; the benchmark is written with matbench's own ``to_file``.

The fold's training data is split 90/10 (seeded) into train and validation for early stopping and
late-fusion α. Matbench needs a prediction for every test row: a test structure that cannot be
featurized (see the error table) gets the training-label mean, and the count is reported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridmat.atomic_io import atomic_write_parquet
from hybridmat.config import JobConfig
from hybridmat.data.matbench_source import MatbenchSource
from hybridmat.data.records import RecordError
from hybridmat.data.splits import random_split
from hybridmat.features.columns import errors_to_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeatureBatch, featurize_records
from hybridmat.workflows.fitting import SplitData
from hybridmat.workflows.train import fit_by_name, train_config


def _featurize(source: MatbenchSource, job: JobConfig) -> tuple[FeatureBatch, list[tuple[int, RecordError]], list[str]]:
    """Features of a fold part, its errors, and every input id in matbench's order."""
    items = list(source)
    records = [item for item in items if not isinstance(item, RecordError)]
    positions = [i for i, item in enumerate(items) if not isinstance(item, RecordError)]
    errors = [(i, item) for i, item in enumerate(items) if isinstance(item, RecordError)]
    batch, failed = featurize_records(records, job.features.settings(), source.targets, positions)
    return batch, errors + failed, [item.id for item in items]


def _subset(batch: FeatureBatch, keep: Sequence[int]) -> FeatureBatch:
    return FeatureBatch(
        index=batch.index[keep], ids=[batch.ids[i] for i in keep], formulas=[batch.formulas[i] for i in keep],
        composition=batch.composition[keep], graphs=[batch.graphs[i] for i in keep],
        targets={name: values[keep] for name, values in batch.targets.items()},
    )


def run_matbench(job: JobConfig, task: str, folds: Sequence[int] | None, out: Path) -> list[dict[str, Any]]:
    """Run the job's model on ``task``'s folds; write ``out`` (matbench results) and return fold scores."""
    benchmark = MatbenchSource(task).load_benchmark()
    name = next(iter(benchmark.tasks_map))
    matbench_task = benchmark.tasks_map[name]
    scores, all_errors = [], []
    out.parent.mkdir(parents=True, exist_ok=True)
    for fold in folds if folds is not None else matbench_task.folds:
        train_source, test_source = MatbenchSource(name, fold, "train"), MatbenchSource(name, fold, "test")
        target = train_source.targets[0]
        train_batch, train_errors, _ = _featurize(train_source, job)
        test_batch, test_errors, test_ids = _featurize(test_source, job)
        parts = random_split(train_batch.ids, (0.9, 0.1, 0.0), seed=job.data.split_seed)
        position = {identifier: i for i, identifier in enumerate(train_batch.ids)}
        train = _subset(train_batch, [position[i] for i in parts["train"]])
        val = _subset(train_batch, [position[i] for i in parts["val"]])
        data = SplitData(CrystalDataset(train, [target]), CrystalDataset(val, [target]),
                         CrystalDataset(test_batch, [target]), [target])
        fitted = fit_by_name(job.model.name, dict(job.model.hyper), data, train_config(job), job.ensemble,
                             out.parent / f"{name}-fold{fold}", job.features.settings().as_dict())
        mean, std = fitted.predict(data.test)
        predicted = dict(zip(test_batch.ids, zip(mean[:, 0].tolist(), std[:, 0].tolist())))
        fallback = (float(np.nanmean(train.targets[target])), float(np.nanstd(train.targets[target])))
        mean_std = [predicted.get(identifier, fallback) for identifier in test_ids]
        spread = [s for _, s in mean_std]
        matbench_task.record(fold, [m for m, _ in mean_std], std=spread if min(spread) > 0 else None,
                             params={"model": job.model.name, "hyper": dict(job.model.hyper), "ensemble": job.ensemble})
        scores.append({"fold": fold,
                       "mae": float(matbench_task.results[matbench_task.folds_map[fold]]["scores"]["mae"]),
                       "n_test": len(test_ids), "fallback_predictions": len(test_ids) - len(predicted)})
        all_errors += train_errors + test_errors
    temporary = out.with_name(f".{out.name}.tmp")
    benchmark.to_file(str(temporary))
    os.replace(temporary, out)
    atomic_write_parquet(errors_to_table(all_errors), errors_file(out))
    return scores


def errors_file(out: Path) -> Path:
    """``results.json`` -> ``results.errors.parquet``."""
    return out.with_name(f"{out.name.split('.')[0]}.errors.parquet")

"""``hybridmat predict``: an ensemble of checkpoints on any source, written as one Parquet table.

Every input row ends up either in the predictions (``id, formula, n_sites, <target>_mean,
<target>_std, model_id``) or in ``<out>.errors.parquet`` with its id, stage and reason. With no
checkpoints given, the ensemble shipped in ``hybridmat/pretrained`` is used.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hybridmat.atomic_io import atomic_write_parquet
from hybridmat.data.records import RecordError, drop_duplicate_ids
from hybridmat.data.source import Source
from hybridmat.features.columns import errors_to_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.training.checkpoint import load_checkpoint
from hybridmat.training.ensemble import Ensemble, Member

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_checkpoints() -> list[Path]:
    """The shipped ensemble's member checkpoints."""
    paths = sorted(PRETRAINED_DIR.glob("member-*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"no pretrained checkpoints in {PRETRAINED_DIR}; pass --models CKPT... "
            "(train one with `hybridmat train jobs/pretrained.yaml`)"
        )
    return paths


def model_id(paths: Sequence[Path]) -> str:
    """A short content hash naming an ensemble (changes whenever any member's weights change)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def load_ensemble(checkpoints: Sequence[Path | bytes], device: str = "cpu") -> tuple[Ensemble, FeaturizerSettings, dict[str, Any]]:
    """Members (checkpoint files or their bytes), the featurizer settings they were trained with, and the
    first member's metadata."""
    members, settings, first_meta = [], set(), None
    for checkpoint in checkpoints:
        model, normalizer, meta = load_checkpoint(checkpoint, device)
        members.append(Member(model, normalizer))
        settings.add(tuple(sorted((meta.get("featurizer_settings") or {}).items())))
        first_meta = first_meta or meta
    if len(settings) != 1:
        raise ValueError(f"ensemble members were trained on different featurizer settings: {sorted(settings)}")
    stored = dict(settings.pop())
    return Ensemble(members), FeaturizerSettings(**stored) if stored else FeaturizerSettings(), first_meta or {}


def predictions_table(ids: list[str], formulas: list[str], n_sites: list[int], target_names: Sequence[str],
                      mean: np.ndarray, std: np.ndarray, ensemble_id: str,
                      index: Sequence[int] | None = None) -> pa.Table:
    """Columns ``[index,] id, formula, n_sites, <t>_mean, <t>_std..., model_id`` (``index``: input row)."""
    columns: dict[str, Any] = {} if index is None else {"index": pa.array(index, type=pa.int64())}
    columns |= {"id": pa.array(ids, type=pa.string()), "formula": pa.array(formulas, type=pa.string()),
                "n_sites": pa.array(n_sites, type=pa.int32())}
    for t, name in enumerate(target_names):
        columns[f"{name}_mean"] = mean[:, t].astype(np.float64)
        columns[f"{name}_std"] = std[:, t].astype(np.float64)
    columns["model_id"] = pa.array([ensemble_id] * len(ids), type=pa.string())
    return pa.table(columns)


def predict_source(source: Source, checkpoints: Sequence[Path], out: Path, chunk_size: int = 1000) -> dict[str, int]:
    """Predict every structure of ``source``; write ``out`` and ``<out>.errors.parquet`` atomically."""
    ensemble, settings, _ = load_ensemble(checkpoints)
    ensemble_id = model_id(checkpoints)
    line_graph = any(m.model.needs_line_graph for m in ensemble.members)
    tables: list[pa.Table] = []
    errors: list[tuple[int, RecordError]] = []
    items = enumerate(drop_duplicate_ids(source))
    while chunk := list(itertools.islice(items, chunk_size)):
        records = [(i, item) for i, item in chunk if not isinstance(item, RecordError)]
        errors += [(i, item) for i, item in chunk if isinstance(item, RecordError)]
        batch, failed = featurize_records([r for _, r in records], settings, (), [i for i, _ in records])
        errors += failed
        if len(batch):
            mean, std = ensemble.predict(CrystalDataset(batch, [], line_graph))
            tables.append(predictions_table(batch.ids, batch.formulas, [g.num_nodes for g in batch.graphs],
                                            ensemble.target_names, mean, std, ensemble_id))
    empty = predictions_table([], [], [], ensemble.target_names, np.empty((0, len(ensemble.target_names))),
                              np.empty((0, len(ensemble.target_names))), ensemble_id)
    result = pa.concat_tables([empty, *tables])
    atomic_write_parquet(result, Path(out))
    atomic_write_parquet(errors_to_table(sorted(errors, key=lambda pair: pair[0])), errors_path(out))
    return {"inputs": result.num_rows + len(errors), "predicted": result.num_rows, "errors": len(errors)}


def errors_path(out: Path) -> Path:
    """``PRED.parquet`` -> ``PRED.errors.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.errors.parquet")

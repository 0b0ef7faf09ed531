"""Lossless conversion between a :class:`FeatureBatch` and an Arrow table (one row per structure).

Columns: ``index`` (input position), ``id``, ``formula``, ``n_sites``, ``composition``
(fixed-size list of float64), one float64 column per target, and for every :class:`CrystalGraph`
field ``graph_<name>`` (flat values, original dtype) + ``graph_<name>_shape``. Graphs are stored raw
(atomic numbers, neighbour indices, bond vectors); expansions (Gaussian distances, atom features, line
graph) are recomputed on load, so stored and freshly computed features are identical by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from hybridmat.features.featurizer import FeatureBatch
from hybridmat.features.graph import CrystalGraph

GRAPH_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CrystalGraph))
BASE_COLUMNS: tuple[str, ...] = ("index", "id", "formula", "n_sites", "composition")
ERROR_SCHEMA = pa.schema(
    [("index", pa.int64()), ("id", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)


def _ragged(arrays: Sequence[np.ndarray], dtype: np.dtype) -> pa.ListArray:
    """One list per row holding the row's array flattened, without a per-row Python conversion."""
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate([a.ravel() for a in arrays]) if arrays else np.empty(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values.astype(dtype, copy=False)))


def _shapes(arrays: Sequence[np.ndarray]) -> pa.ListArray:
    return pa.array([list(a.shape) for a in arrays], type=pa.list_(pa.int32()))


def batch_to_table(batch: FeatureBatch) -> pa.Table:
    """Arrow table of a feature batch (see the module docstring for the columns)."""
    n_features = batch.composition.shape[1]
    columns: dict[str, pa.Array] = {
        "index": pa.array(batch.index, type=pa.int64()),
        "id": pa.array(batch.ids, type=pa.string()),
        "formula": pa.array(batch.formulas, type=pa.string()),
        "n_sites": pa.array([len(g.atomic_numbers) for g in batch.graphs], type=pa.int32()),
        "composition": pa.FixedSizeListArray.from_arrays(
            pa.array(batch.composition.astype(np.float64).ravel()), n_features
        ),
    }
    for name, values in batch.targets.items():
        columns[name] = pa.array(values, type=pa.float64())
    for name in GRAPH_FIELDS:
        arrays = [getattr(g, name) for g in batch.graphs]
        columns[f"graph_{name}"] = _ragged(arrays, CrystalGraph.FIELD_DTYPES[name])
        columns[f"graph_{name}_shape"] = _shapes(arrays)
    return pa.table(columns)


def graphs_from_table(table: pa.Table) -> list[CrystalGraph]:
    """Rebuild the :class:`CrystalGraph` of every row (zero-copy slices of the column buffers)."""
    fields: dict[str, list[np.ndarray]] = {}
    for name in GRAPH_FIELDS:
        column = table.column(f"graph_{name}").combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False)
        offsets = column.offsets.to_numpy()
        shapes = table.column(f"graph_{name}_shape").to_pylist()
        fields[name] = [
            values[offsets[i] : offsets[i + 1]].reshape(shape) for i, shape in enumerate(shapes)
        ]
    return [
        CrystalGraph(**{name: fields[name][i] for name in GRAPH_FIELDS}) for i in range(table.num_rows)
    ]


def composition_from_table(table: pa.Table) -> np.ndarray:
    """The ``(rows, n_features)`` float64 composition matrix."""
    column = table.column("composition").combine_chunks()
    width = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, width)


def target_names(table: pa.Table) -> list[str]:
    """Names of the target columns in a feature table."""
    return [
        name
        for name in table.column_names
        if name not in BASE_COLUMNS and not name.startswith("graph_")
    ]


def table_to_batch(table: pa.Table) -> FeatureBatch:
    """Inverse of :func:`batch_to_table`."""
    return FeatureBatch(
        index=table.column("index").to_numpy(),
        ids=table.column("id").to_pylist(),
        formulas=table.column("formula").to_pylist(),
        composition=composition_from_table(table),
        graphs=graphs_from_table(table),
        targets={name: table.column(name).to_numpy() for name in target_names(table)},
    )


def errors_to_table(errors: Sequence[tuple[int, object]]) -> pa.Table:
    """Arrow table ``(index, id, stage, reason)`` of ``(input index, RecordError)`` pairs."""
    return pa.table(
        {
            "index": pa.array([i for i, _ in errors], type=pa.int64()),
            "id": pa.array([e.id for _, e in errors], type=pa.string()),
            "stage": pa.array([e.stage for _, e in errors], type=pa.string()),
            "reason": pa.array([e.reason for _, e in errors], type=pa.string()),
        },
        schema=ERROR_SCHEMA,
    )

"""Turn a batch of structure records into composition vectors + crystal graphs, routing bad rows to errors.

This is the one pure function every execution path calls: a unit test, the single-process
``hybridmat featurize`` and the Ray featurization actors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Literal

import numpy as np

from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.data.validate import overlap_problem, structure_problem
from hybridmat.features.atom_features import unsupported_element_reason
from hybridmat.features.composition import Ward2016Featurizer
from hybridmat.features.graph import CrystalGraph, build_crystal_graph
from hybridmat.features.magpie import MagpieFeaturizer

CompositionSet = Literal["magpie", "ward2016"]
COMPOSITION_SETS: tuple[str, ...] = ("magpie", "ward2016")


@dataclass(frozen=True)
class FeaturizerSettings:
    """Everything that determines the stored features; recorded in the feature store's manifest."""

    composition: CompositionSet = "ward2016"
    cutoff: float = 8.0
    max_neighbors: int = 12

    def __post_init__(self) -> None:
        if self.composition not in COMPOSITION_SETS:
            raise ValueError(f"unknown composition feature set {self.composition!r}; choose one of {COMPOSITION_SETS}")
        if self.cutoff <= 0 or self.max_neighbors < 1:
            raise ValueError(f"cutoff must be > 0 and max_neighbors >= 1, got {self.cutoff}, {self.max_neighbors}")

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for manifests and job files."""
        return asdict(self)


@cache
def composition_featurizer(name: CompositionSet) -> MagpieFeaturizer | Ward2016Featurizer:
    """The (stateless, cached) composition featurizer for a settings name."""
    return {"magpie": MagpieFeaturizer, "ward2016": Ward2016Featurizer}[name]()


@dataclass
class FeatureBatch:
    """Features of the rows that succeeded, in input order.

    ``index`` is each row's position in the input stream, which lets shards written in any order be
    merged and de-duplicated deterministically ("the first input row with an id wins").
    """

    index: np.ndarray
    ids: list[str]
    formulas: list[str]
    composition: np.ndarray
    graphs: list[CrystalGraph]
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def _graph_or_error(record: StructureRecord, settings: FeaturizerSettings) -> CrystalGraph | RecordError:
    """Validate one structure and build its graph; every failure becomes a RecordError with a reason."""
    problem = structure_problem(record.structure)
    if problem:
        return RecordError(record.id, "validate", problem)
    reason = unsupported_element_reason(record.structure) or composition_featurizer(
        settings.composition
    ).unsupported_reason(record.structure.composition)
    if reason:
        return RecordError(record.id, "featurize", reason)
    try:
        graph = build_crystal_graph(record.structure, settings.cutoff, settings.max_neighbors)
    except Exception as error:  # noqa: BLE001 - one bad structure must never stop a run
        return RecordError(record.id, "graph", f"graph construction failed: {type(error).__name__}: {error}")
    if graph.edge_index.shape[1]:
        problem = overlap_problem(float(graph.distances.min()))
        if problem:
            return RecordError(record.id, "validate", problem)
    return graph


def featurize_records(
    records: Sequence[StructureRecord],
    settings: FeaturizerSettings,
    target_names: Sequence[str] = (),
    index: Sequence[int] | None = None,
) -> tuple[FeatureBatch, list[tuple[int, RecordError]]]:
    """Featurize ``records``; return the successful rows and ``(input index, error)`` for the rest.

    Composition features are computed in one vectorised call for the whole batch, graphs per structure.
    Missing targets are stored as NaN (callers that need labels reject them beforehand).
    """
    positions = list(range(len(records))) if index is None else list(index)
    kept: list[int] = []
    graphs: list[CrystalGraph] = []
    errors: list[tuple[int, RecordError]] = []
    for i, (position, record) in enumerate(zip(positions, records, strict=True)):
        outcome = _graph_or_error(record, settings)
        if isinstance(outcome, RecordError):
            errors.append((position, outcome))
        else:
            kept.append(i)
            graphs.append(outcome)
    good = [records[i] for i in kept]
    featurizer = composition_featurizer(settings.composition)
    n_features = len(featurizer.feature_labels())
    composition = (
        featurizer.featurize_many([r.structure.composition for r in good])
        if good
        else np.empty((0, n_features))
    )
    batch = FeatureBatch(
        index=np.asarray([positions[i] for i in kept], dtype=np.int64),
        ids=[r.id for r in good],
        formulas=[r.formula for r in good],
        composition=composition,
        graphs=graphs,
        targets={
            name: np.array([float(r.targets.get(name, np.nan)) for r in good], dtype=np.float64)
            for name in target_names
        },
    )
    return batch, errors

"""Turn a batch of structure records into composition vectors + crystal graphs, routing bad rows to errors.

This is the one pure function every execution path calls: a unit test, the single-process
``hybridmat featurize`` and the Ray featurization actors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np

from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.data.validate import overlap_problem, structure_problem
from hybridmat.features.atom_features import unsupported_element_reason
from hybridmat.features.composition import Ward2016Featurizer
from hybridmat.features.graph import (
    DEFAULT_BASIS_STEP,
    DEFAULT_CUTOFF,
    DEFAULT_MAX_NEIGHBORS,
    CrystalGraph,
    GaussianBasis,
    build_crystal_graph,
)
from hybridmat.features.magpie import MagpieFeaturizer

CompositionSet = Literal["magpie", "ward2016"]
COMPOSITION_SETS: tuple[str, ...] = ("magpie", "ward2016")
#: Sane upper bounds: crystal-graph models use 4-8 Å and 12-16 neighbours; a 20 Å sphere already holds
#: thousands of atoms, and more neighbours than 128 per atom is a typo, not a setting.
MAX_CUTOFF = 20.0
MAX_NEIGHBORS = 128


def check_graph_settings(cutoff: float, max_neighbors: int) -> None:
    """``ValueError`` unless ``0 < cutoff <= MAX_CUTOFF`` (finite, Å) and ``1 <= max_neighbors <= MAX_NEIGHBORS``."""
    if not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and 0 < cutoff <= MAX_CUTOFF):
        raise ValueError(f"cutoff must be a finite number of Å in (0, {MAX_CUTOFF:g}], got {cutoff!r}")
    if isinstance(max_neighbors, bool) or not isinstance(max_neighbors, (int, np.integer)) \
            or not 1 <= max_neighbors <= MAX_NEIGHBORS:
        raise ValueError(f"max_neighbors must be an integer in [1, {MAX_NEIGHBORS}], got {max_neighbors!r}")


@dataclass(frozen=True)
class FeaturizerSettings:
    """Everything that determines the stored features; recorded in the feature store's manifest."""

    composition: CompositionSet = "ward2016"
    cutoff: float = DEFAULT_CUTOFF
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS
    #: Last centre (Å) of the Gaussian edge basis; ``None`` means the cutoff, so no kept bond is flattened.
    edge_basis_stop: float | None = None
    #: Spacing and width (Å) of the edge basis' Gaussians.
    edge_basis_step: float = DEFAULT_BASIS_STEP

    def __post_init__(self) -> None:
        if self.composition not in COMPOSITION_SETS:
            raise ValueError(f"unknown composition feature set {self.composition!r}; choose one of {COMPOSITION_SETS}")
        check_graph_settings(self.cutoff, self.max_neighbors)
        if self.edge_basis_stop is None:
            object.__setattr__(self, "edge_basis_stop", float(self.cutoff))
        GaussianBasis(self.edge_basis_stop, self.edge_basis_step)  # raises ValueError for an impossible basis

    @property
    def edge_basis(self) -> GaussianBasis:
        """The Gaussian expansion of bond lengths that models trained on these features consume."""
        stop = self.cutoff if self.edge_basis_stop is None else self.edge_basis_stop
        return GaussianBasis(float(stop), self.edge_basis_step)

    def as_dict(self) -> dict[str, object]:
        """Plain-dict form for manifests and job files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> FeaturizerSettings:
        """Settings as :meth:`as_dict` wrote them. Manifests and checkpoints written before the edge basis
        was a setting lack its fields: they used the fixed 0-8 Å basis whatever the cutoff, and get it back."""
        legacy = {"edge_basis_stop": DEFAULT_CUTOFF, "edge_basis_step": DEFAULT_BASIS_STEP}
        return cls(**{**legacy, **stored})


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
    #: How models expand the graphs' bond lengths (the settings' basis; the default for stored tables).
    edge_basis: GaussianBasis = field(default_factory=GaussianBasis)

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
        edge_basis=settings.edge_basis,
    )
    return batch, errors

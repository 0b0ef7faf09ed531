"""The Python face of hybridmat: load an ensemble, predict structures into a DataFrame, rank a DataFrame.

::

    import hybridmat
    model = hybridmat.load_pretrained()
    predictions = model.predict([structure, atoms])          # pymatgen Structures or ASE Atoms
    ranked = hybridmat.rank(predictions, by="lcb:e_form", where="band_gap between 1 and 3")

The columns are those of ``hybridmat predict``; ``rank`` applies the rules of ``hybridmat rank`` (the same
query code). Importing :mod:`hybridmat` stays light: torch, pymatgen and DuckDB load when a function runs.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from hybridmat.workflows.predict import Predictor


class Model:
    """A loaded ensemble (members, calibration, domain model); build one with :func:`load_pretrained` or
    :func:`load_model`."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def target_names(self) -> tuple[str, ...]:
        return self.predictor.target_names

    @property
    def model_id(self) -> str:
        return self.predictor.model_id

    @property
    def calibrated(self) -> bool:
        """Whether ``<t>_std`` is calibrated (and ``<t>_lo``/``<t>_hi`` and ``in_domain`` are present)."""
        return self.predictor.calibration is not None

    def __repr__(self) -> str:
        state = "calibrated" if self.calibrated else "uncalibrated"
        return f"Model({len(self.predictor.ensemble.members)} members, targets {self.target_names}, {state}, " \
               f"id {self.model_id})"

    def predict_with_errors(self, structures: Sequence[Any] | str,
                            ids: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(predictions, errors)``: every input is a row of one of them (errors: ``index, id, stage, reason``)."""
        from hybridmat.data.source_strings import open_source
        from hybridmat.features.columns import errors_to_table

        records = open_source(structures) if isinstance(structures, str) else _records(structures, ids)
        table, errors = self.predictor.predict_records(records)
        return table.to_pandas(), errors_to_table(errors).to_pandas()

    def predict(self, structures: Sequence[Any] | str, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Predictions of pymatgen ``Structure``s, ASE ``Atoms`` or a source string, in the columns of
        ``hybridmat predict``; inputs that cannot be predicted are left out with a warning that names them
        (:meth:`predict_with_errors` returns them as a table)."""
        predictions, errors = self.predict_with_errors(structures, ids)
        if len(errors):
            listed = "; ".join(f"{row.id}: {row.reason}" for row in errors.head(5).itertuples())
            warnings.warn(f"{len(errors)} of {len(errors) + len(predictions)} structures were not predicted "
                          f"({listed}{'; ...' if len(errors) > 5 else ''})", stacklevel=2)
        return predictions


def _records(structures: Sequence[Any], ids: Sequence[str] | None) -> list[Any]:
    """``StructureRecord``s (ASE ``Atoms`` converted with pymatgen's adaptor), or a ``RecordError`` per bad input."""
    from pymatgen.core import Structure

    from hybridmat.data.records import RecordError, StructureRecord

    if ids is not None and len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
    records: list[Any] = []
    for i, structure in enumerate(structures):
        name = str(ids[i]) if ids is not None else str(i)
        if any(cls.__module__.startswith("ase.") and cls.__name__ == "Atoms" for cls in type(structure).__mro__):
            from pymatgen.io.ase import AseAtomsAdaptor

            structure = AseAtomsAdaptor.get_structure(structure)
        if isinstance(structure, Structure):
            records.append(StructureRecord(name, structure, provenance="python"))
        else:
            records.append(RecordError(name, "read", f"expected a pymatgen Structure or ASE Atoms, "
                                                      f"got {type(structure).__name__}"))
    return records


def load_model(path: str | Path | Sequence[str | Path], device: str = "cpu") -> Model:
    """An ensemble from a model directory (``member-k.pt`` + its calibration), a training job's output
    (``member-k/best.pt``) or a list of member checkpoints."""
    from hybridmat.workflows.predict import load_predictor

    models = Path(path) if isinstance(path, str | Path) else [Path(p) for p in path]
    return Model(load_predictor(models, device))


def load_pretrained(device: str = "cpu") -> Model:
    """The ensemble shipped in ``hybridmat/pretrained`` (see its MODEL_CARD.md)."""
    from hybridmat.workflows.predict import PRETRAINED_DIR

    return load_model(PRETRAINED_DIR, device)


def rank(predictions: pd.DataFrame, by: str = "e_form", where: str | None = None, kappa: float = 1.0,
         top: int | None = None, hull_reference: str | None = None,
         include_out_of_domain: bool = False) -> pd.DataFrame:
    """Filter and order a predictions DataFrame exactly as ``hybridmat rank`` does (``rank`` and ``score``
    columns added; ``e_hull``, ``hull_phases`` and ``hull_incomplete`` with a hull reference)."""
    import pyarrow as pa

    from hybridmat.atomic_io import atomic_write_parquet
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.ranking.query import query_predictions

    hull = read_hull_reference(hull_reference) if hull_reference else None
    with tempfile.TemporaryDirectory(prefix="hybridmat-rank-") as folder:
        path = Path(folder) / "predictions.parquet"
        atomic_write_parquet(pa.Table.from_pandas(predictions, preserve_index=False), path)
        ranked, _ = query_predictions(path, where, by, kappa, hull, include_out_of_domain)
    frame = ranked.to_pandas()
    return frame.head(top) if top is not None else frame

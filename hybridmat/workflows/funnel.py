"""The screening funnel: shortlist stage-1 predictions, relax the shortlist, predict it again, combine the estimates.

::

    OUT/shards (stage 1: ensemble on every candidate)
      └─► shortlist (rank's order: top_k and/or score ≤ max_score)   OUT/funnel/shortlist.parquet
           └─► relax with a universal potential on Ray actors       OUT/funnel/relaxed/
                └─► ensemble on the relaxed structures              OUT/funnel/rescored.parquet
                     └─► one row per relaxed candidate              OUT/funnel/predictions.parquet

The final table is a predictions table (``hybridmat rank`` reads it) with, per candidate:

- ``e_form_relaxed``: the ensemble on the relaxed structure (calibrated std); ``e_form_unrelaxed``: stage 1;
- ``e_form_potential``: the potential's formation energy on MP's scale, with the potential's own error as
  its std (:attr:`~hybridmat.potentials.base.Potential.e_form_std`); ``e_form_gap`` = relaxed − potential;
- ``e_form``: the two combined (:func:`combine_estimates`), so their disagreement widens the std;
- every other target (``band_gap``) from the ensemble on the relaxed structure, ``<t>_unrelaxed`` from stage 1;
- the relaxation: ``potential_energy_per_atom, steps, converged, max_force, volume_change``; ``stage1_rank``.

With a hull reference ``rank`` adds ``e_hull``, ``e_hull_relaxed``, ``e_hull_potential`` and
``e_hull_unrelaxed``. A shortlisted candidate that fails relaxation or re-featurization is a row of
``OUT/funnel/errors.parquet`` (id, stage, reason); every shortlisted id is in one of the two tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hybridmat.atomic_io import atomic_write_parquet
from hybridmat.config import RelaxSection
from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.data.source import Source
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.potentials.base import potential_class

FUNNEL = "funnel"
RELAX_COLUMNS = {"energy_per_atom": "potential_energy_per_atom", "steps": "steps", "converged": "converged",
                 "max_force": "max_force", "volume_change": "volume_change"}


@dataclass(frozen=True)
class FunnelCounts:
    """What happened to the shortlist."""

    shortlisted: int
    relaxed: int
    converged: int
    predicted: int
    errors: int

    def summary(self) -> str:
        """One line for the console."""
        return (f"{self.shortlisted:,} shortlisted, {self.relaxed:,} relaxed ({self.converged:,} converged), "
                f"{self.predicted:,} re-scored, {self.errors:,} errors")


def funnel_dir(screen_out: Path) -> Path:
    """Where a screen's funnel writes its files."""
    return Path(screen_out) / FUNNEL


def combine_estimates(mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray,
                      std_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two estimates of one quantity as the inverse-variance weighted mixture of both: its mean, and its std
    ``√(w_a σ_a² + w_b σ_b² + w_a w_b (μ_a − μ_b)²)`` — the disagreement widens it. Where ``b`` is NaN, ``a``."""
    mean_a, std_a, mean_b, std_b = (np.asarray(x, dtype=float) for x in (mean_a, std_a, mean_b, std_b))
    weight_a = (1 / std_a**2) / (1 / std_a**2 + 1 / std_b**2)
    weight_b = 1 - weight_a
    mean = weight_a * mean_a + weight_b * mean_b
    variance = weight_a * std_a**2 + weight_b * std_b**2 + weight_a * weight_b * (mean_a - mean_b) ** 2
    missing = ~np.isfinite(mean_b) | ~np.isfinite(std_b)
    return np.where(missing, mean_a, mean), np.where(missing, std_a, np.sqrt(variance))


def shortlist(stage1: Path, section: RelaxSection) -> pa.Table:
    """Stage-1 rows chosen for relaxation, in rank order (columns of ``rank``: ``rank``, ``score``, ...)."""
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.ranking.query import query_predictions

    hull = read_hull_reference(section.hull_reference) if section.hull_reference else None
    ranked, _ = query_predictions(stage1, section.where, section.by, section.kappa, hull)
    if section.max_score is not None:
        ranked = ranked.filter(pc.less_equal(ranked.column("score"), section.max_score))
    return ranked.slice(0, section.top_k) if section.top_k is not None else ranked


def shortlisted_records(source: Source, chosen: pa.Table) -> list[StructureRecord]:
    """The input records of the shortlisted rows, read from ``source`` by their stage-1 index in one pass."""
    wanted = dict(zip(chosen.column("index").to_pylist(), chosen.column("id").to_pylist(), strict=True))
    if not wanted:
        return []
    found: dict[int, StructureRecord] = {}
    first = min(wanted)
    for index, item in enumerate(source.iter_range(first, max(wanted) + 1), start=first):
        if index in wanted and not isinstance(item, RecordError):
            if item.id != wanted[index]:
                raise ValueError(f"input row {index} is {item.id!r}, but stage 1 predicted {wanted[index]!r} "
                                 "there: the source changed since the screen; screen it again with --overwrite")
            found[index] = item
    return [found[index] for index in chosen.column("index").to_pylist() if index in found]


def run_funnel(source: Source, stage1: Path, checkpoints: Sequence[Path], section: RelaxSection,
               progress: bool = True) -> FunnelCounts:
    """Shortlist ``stage1`` (a screen directory of ``source``), relax, re-score and combine into
    ``stage1/funnel/predictions.parquet`` (Ray must be running). Resumes a finished relaxation's shards."""
    from hybridmat.distributed.relax import RelaxedSource, read_relaxed, relax_with_ray
    from hybridmat.features.store import ERRORS
    from hybridmat.workflows.predict import errors_path, predict_source

    out = funnel_dir(stage1)
    out.mkdir(parents=True, exist_ok=True)
    chosen = shortlist(stage1, section)
    shortlist_file = out / "shortlist.parquet"
    write_structure_table(shortlisted_records(source, chosen), shortlist_file)
    # The relaxed store is derived data: a changed shortlist replaces it, the same one resumes it.
    relax_with_ray(open_source(str(shortlist_file)), out / "relaxed", spec=str(shortlist_file),
                   workers=section.workers, potential=section.potential, settings=section.settings(),
                   overwrite=True, progress=progress)
    relaxed = read_relaxed(out / "relaxed")
    predict_source(RelaxedSource(out / "relaxed"), checkpoints, out / "rescored.parquet")
    rescored = pq.read_table(out / "rescored.parquet")
    final = combine_funnel(chosen, relaxed, rescored, potential_class(section.potential).e_form_std)
    atomic_write_parquet(final, out / "predictions.parquet")
    errors = pa.concat_tables([pq.read_table(path).select(["id", "stage", "reason"])
                               for path in (out / "relaxed" / ERRORS, errors_path(out / "rescored.parquet"))])
    atomic_write_parquet(errors, out / "errors.parquet")
    return FunnelCounts(shortlisted=chosen.num_rows, relaxed=relaxed.num_rows,
                        converged=int(sum(relaxed.column("converged").to_pylist())), predicted=final.num_rows,
                        errors=errors.num_rows)


def combine_funnel(chosen: pa.Table, relaxed: pa.Table, rescored: pa.Table, potential_std: float | None) -> pa.Table:
    """The final table of the module docstring, one row per re-scored candidate, in stage-1 rank order."""
    stage1 = chosen.to_pandas().set_index("id")
    relax = relaxed.to_pandas().set_index("id")
    final = rescored.to_pandas().drop(columns=["index"], errors="ignore").set_index("id")
    targets = [c.removesuffix("_mean") for c in final.columns if c.endswith("_mean")]
    final = final.rename(columns={f"e_form_{part}": f"e_form_relaxed_{part}" for part in ("mean", "std", "lo", "hi")})
    for target in targets:
        for part in ("mean", "std"):
            final[f"{target}_unrelaxed_{part}"] = stage1[f"{target}_{part}"].reindex(final.index)
    final["e_form_potential_mean"] = relax["potential_e_form"].reindex(final.index)
    final["e_form_potential_std"] = np.nan if potential_std is None else potential_std
    final["e_form_gap"] = final["e_form_relaxed_mean"] - final["e_form_potential_mean"]
    final["e_form_mean"], final["e_form_std"] = combine_estimates(
        final["e_form_relaxed_mean"], final["e_form_relaxed_std"], final["e_form_potential_mean"],
        final["e_form_potential_std"])
    for column, name in RELAX_COLUMNS.items():
        final[name] = relax[column].reindex(final.index)
    final["stage1_rank"] = stage1["rank"].reindex(final.index)
    final = final.sort_values(["stage1_rank"]).reset_index()
    leading = ["id", "formula", "e_form_mean", "e_form_std"]
    return pa.Table.from_pandas(final[leading + [c for c in final.columns if c not in leading]], preserve_index=False)


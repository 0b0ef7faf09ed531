"""Energy above the convex hull of known phases, from (predicted) formation energies per atom.

Reference phases are formula + formation energy per atom (DFT, e.g. the training data); every element
is added at 0 eV/atom. Candidates are grouped by chemical system and one pymatgen ``PhaseDiagram`` is
built per system from the reference phases of that system and all its subsystems, so 100k candidates
need as many hulls as they have distinct systems. ``E_hull = e_form - E_hull_surface(composition)``,
the ``get_decomp_and_e_above_hull(..., allow_negative=True)`` value: negative below the known hull.

A hull is only as good as the phases it knows: :meth:`HullReference.coverage` counts the known compounds of each
row's chemical system (``hull_phases``) and marks a system ``hull_incomplete`` when one of its binary subsystems
has no known compound at all, so the hull there is the straight line between the elements and E_hull is an
upper bound on how unstable the row really is.
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

#: Formula and formation-energy (eV/atom) column names accepted in a reference table, first match wins.
FORMULA_COLUMNS = ("formula", "composition", "reduced_formula")
ENERGY_COLUMNS = ("e_form", "e_form_eV_per_atom", "formation_energy_per_atom")

ChemicalSystem = tuple[str, ...]


def chemical_system(composition: Composition) -> ChemicalSystem:
    """Sorted element symbols, e.g. ``("Li", "O")``."""
    return tuple(sorted(element.symbol for element in composition.elements))


def parse_formula(formula: str, what: str) -> Composition:
    """``Composition(formula)``, with an error that says which table the bad formula came from."""
    try:
        composition = Composition(formula)
    except (ValueError, KeyError) as error:
        raise ValueError(f"{what}: cannot read formula {formula!r} ({error}); fix or drop that row") from None
    if not composition.valid:
        raise ValueError(f"{what}: formula {formula!r} is not made of elements; fix or drop that row")
    return composition


class HullReference:
    """Known phases, lowest formation energy per reduced composition, indexed by chemical system."""

    def __init__(self, formulas: Iterable[str], e_form: Iterable[float]) -> None:
        lowest: dict[str, tuple[Composition, float]] = {}
        for formula, energy in zip(formulas, e_form, strict=True):
            if formula is None or energy is None or not np.isfinite(energy):
                continue
            composition = parse_formula(formula, "hull reference")
            with warnings.catch_warnings():  # noble gases have no Pauling electronegativity; only the order uses it
                warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
                key = composition.reduced_formula
            if key not in lowest or energy < lowest[key][1]:
                lowest[key] = (composition.reduced_composition, float(energy))
        self.entries: dict[ChemicalSystem, list[PDEntry]] = defaultdict(list)
        for composition, energy in lowest.values():
            entry = PDEntry(composition, energy * composition.num_atoms)
            self.entries[chemical_system(composition)].append(entry)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.entries.values())

    def phase_diagram(self, system: ChemicalSystem) -> PhaseDiagram:
        """The hull of ``system``: its elements at 0 eV/atom plus every reference phase within it."""
        entries = [PDEntry(Composition(element), 0.0) for element in system]
        for size in range(1, len(system) + 1):
            for subsystem in itertools.combinations(system, size):
                entries += self.entries.get(subsystem, [])
        return PhaseDiagram(entries)

    def hull_energies(self, formulas: Sequence[str]) -> np.ndarray:
        """Formation energy per atom of the hull at each formula's composition (eV/atom)."""
        compositions = [parse_formula(formula, "predictions") for formula in formulas]
        by_system: dict[ChemicalSystem, list[int]] = defaultdict(list)
        for i, composition in enumerate(compositions):
            by_system[chemical_system(composition)].append(i)
        energies = np.empty(len(compositions))
        for system, rows in by_system.items():
            diagram = self.phase_diagram(system)
            for i in rows:
                energies[i] = diagram.get_hull_energy_per_atom(compositions[i])
        return energies

    def known_compounds(self, system: ChemicalSystem) -> int:
        """Reference phases of two or more elements in ``system`` and its subsystems."""
        return sum(len(self.entries.get(subsystem, [])) for size in range(2, len(system) + 1)
                   for subsystem in itertools.combinations(system, size))

    def incomplete(self, system: ChemicalSystem) -> bool:
        """Whether some binary subsystem of ``system`` has no known compound."""
        return any(not self.entries.get(pair) for pair in itertools.combinations(system, 2))

    def coverage(self, formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per formula: hull energy (eV/atom), known compounds of its system, and whether that system's hull
        is incomplete (see the module docstring)."""
        systems = [chemical_system(parse_formula(formula, "predictions")) for formula in formulas]
        phases = {system: self.known_compounds(system) for system in set(systems)}
        gaps = {system: self.incomplete(system) for system in set(systems)}
        return (self.hull_energies(formulas), np.array([phases[s] for s in systems], dtype=np.int64),
                np.array([gaps[s] for s in systems], dtype=bool))

    def e_above_hull(self, formulas: Sequence[str], e_form: Sequence[float]) -> np.ndarray:
        """``e_form - hull energy`` per row (eV/atom; negative when below the known hull)."""
        return np.asarray(e_form, dtype=np.float64) - self.hull_energies(formulas)


def _column(names: Sequence[str], accepted: Sequence[str], path: Path, what: str) -> str:
    found = next((name for name in accepted if name in names), None)
    if found is None:
        raise ValueError(f"hull reference {path} has no {what} column (one of {list(accepted)}); "
                         f"its columns are {list(names)}")
    return found


def read_hull_reference(spec: str) -> HullReference:
    """Reference phases from ``TABLE.parquet`` or ``TABLE.csv``: every row (screening wants every known phase),
    or with ``?split=NAME/PART`` only the ids of that part of ``splits.json`` beside the table (for benchmarks that
    must hide held-out phases, e.g. ``mp_cgcnn36k.parquet?split=full/train``). Kept for the next call with the same
    spec while the table is unchanged (the demo's stages read the same 36,738 phases several times)."""
    path = Path(spec.partition("?")[0])
    if not path.is_file():
        raise FileNotFoundError(f"hull reference {path} not found "
                                "(give a .parquet or .csv table of known phases)")
    stat = path.stat()
    return _read_hull_reference(spec, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read_hull_reference(spec: str, mtime_ns: int, size: int) -> HullReference:
    """:func:`read_hull_reference` for one version of the table (``mtime_ns`` and ``size`` key the cache)."""
    from hybridmat.data.splits import load_splits

    body, _, query = spec.partition("?")
    options = dict(parse_qsl(query, strict_parsing=bool(query)))
    if set(options) - {"split"}:
        raise ValueError(f"hull reference {spec!r}: the only option is split=NAME/PART, "
                         f"got {sorted(options)}")
    path = Path(body)
    relation = duckdb.read_csv(str(path)) if path.suffix == ".csv" else duckdb.read_parquet(str(path))
    formula = _column(relation.columns, FORMULA_COLUMNS, path, "formula")
    energy = _column(relation.columns, ENERGY_COLUMNS, path, "formation energy (eV/atom)")
    wanted = [formula, energy] + (["id"] if "split" in options else [])
    if "split" in options and "id" not in relation.columns:
        raise ValueError(f"hull reference {spec!r}: ?split= needs an id column; its columns are {relation.columns}")
    table = pa.table(relation.select(*map(duckdb.ColumnExpression, wanted)).arrow())
    if "split" in options:
        name, _, part = options["split"].partition("/")
        parts = load_splits(path.with_name("splits.json"), name)
        if part not in parts:
            raise ValueError(f"hull reference {spec!r}: split {name!r} has parts {sorted(parts)}, "
                             f"not {part!r}")
        table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(parts[part])))
    return HullReference(table.column(formula).to_pylist(), table.column(energy).to_pylist())

"""Candidate crystals made by substituting elements into prototype structures.

Rules (the prototypes, roles and lattice scaling live in :mod:`hybridmat.data.prototypes`):

* **Assignments.** Every injective map of the given elements onto a prototype's sublattices
  (distinct elements on distinct sublattices), enumerated in a canonical order: prototypes as in
  ``list_prototypes()`` (built-ins first, then AFLOW names sorted), elements by atomic number.
* **Chemistry filter** (``charge_balanced=True``). Ionic prototypes keep an assignment when
  :func:`~hybridmat.data.prototypes.balance_charges` finds oxidation states (pymatgen common + ICSD
  states) that sum to zero with cation sublattices positive, anion sublattices negative and every anion
  more electronegative than every cation. Intermetallic prototypes (Heusler, AFLOW alloys and elements)
  are not charge balanced: they keep an assignment when every element is a metal or metalloid. With
  ``charge_balanced=False`` every assignment is kept (ions that do balance still set the radii).
* **Duplicates.** Two candidates are the same when their reduced compositions are equal and their
  prototypes are the same or give the same structure (templates matched once with pymatgen's
  ``StructureMatcher.fit_anonymous``, outside the hot path). Of a duplicate group the one kept passes
  the chemistry filter, then comes from the first prototype, then has the smallest volume per atom
  (e.g. Sr, not Ti, on the perovskite A site), then the lowest atomic numbers.
* **Sampling.** The pool is sorted by (prototype, composition); with ``n`` smaller than the pool a
  ``random.Random(seed)`` sample is taken and returned in pool order; otherwise the whole pool.
* **Ids and provenance.** ``cand-<prototype>-<reduced formula>`` and ``substitution:<prototype>``.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from itertools import product

import pymatgen.core
from pymatgen.analysis.structure_matcher import StructureMatcher

from hybridmat.data.prototypes import (
    BUILTIN_PROTOTYPES,
    SUPPORTED_ELEMENTS,
    Prototype,
    balance_charges,
    get_prototype,
    is_metallic,
    oxidation_states,
    resolve_prototype,
)
from hybridmat.data.records import StructureRecord
from hybridmat.data.source import Source, hash_strings

#: Bump when a rule above changes, so fingerprints of generated candidates change with it.
RULES_VERSION = "1"
#: Refuse a prototype whose assignments exceed this (e.g. 4 sublattices x 60 elements); pass fewer elements.
MAX_ASSIGNMENTS = 5_000_000
#: The natural default prototypes.
DEFAULT_PROTOTYPES: tuple[str, ...] = BUILTIN_PROTOTYPES
#: A demo element set: common cations, metals and anions (several thousand charge-balanced candidates).
DEMO_ELEMENTS: tuple[str, ...] = (
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba", "Sc", "Y", "La", "Ti", "Zr", "Hf", "V", "Nb",
    "Ta", "Cr", "Mo", "W", "Mn", "Fe", "Co", "Ni", "Cu", "Ag", "Zn", "Cd", "Al", "Ga", "In", "Si", "Ge",
    "Sn", "Sb", "Bi", "N", "O", "S", "Se", "Te", "F", "Cl", "Br", "I",
)

_Z = {symbol: z for z, symbol in enumerate(SUPPORTED_ELEMENTS, start=1)}
_Pick = tuple[str, tuple[str, ...], tuple[int, ...] | None]  # (prototype, elements, oxidation states)


def _normalise_elements(elements: Sequence[str]) -> tuple[str, ...]:
    """Unique element symbols sorted by atomic number; a clear error for an unknown or unsupported one."""
    if isinstance(elements, str):
        raise ValueError(f"elements must be a sequence of symbols, not the string {elements!r}")
    for symbol in elements:
        if symbol not in SUPPORTED_ELEMENTS:
            close = difflib.get_close_matches(str(symbol).capitalize(), SUPPORTED_ELEMENTS, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(f"unknown or unsupported element {symbol!r}: {hint}valid symbols are "
                             f"{', '.join(SUPPORTED_ELEMENTS)}")
    if not elements:
        raise ValueError("no elements given: pass at least one element symbol, e.g. ['Na', 'Cl']")
    return tuple(sorted(set(elements), key=_Z.__getitem__))


def _normalise_prototypes(prototypes: Sequence[str]) -> tuple[str, ...]:
    """Unique canonical prototype names, built-ins first (raises ValueError naming the valid choices)."""
    if isinstance(prototypes, str):
        raise ValueError(f"prototypes must be a sequence of names, not the string {prototypes!r}")
    if not prototypes:
        raise ValueError(f"no prototypes given: pass names such as {', '.join(BUILTIN_PROTOTYPES)}")
    builtin = {name: k for k, name in enumerate(BUILTIN_PROTOTYPES)}
    return tuple(sorted({resolve_prototype(name) for name in prototypes},
                        key=lambda name: (builtin.get(name, len(builtin)), name)))


@cache
def _prototype(name: str) -> Prototype:
    """One private copy per prototype for the hot path."""
    return get_prototype(name)


@cache
def _same_structure_type(a: str, b: str) -> bool:
    """Whether two prototype templates are the same structure up to relabelling elements and scaling."""
    pa, pb = _prototype(a), _prototype(b)
    if sorted(_reduced(pa.counts)) != sorted(_reduced(pb.counts)):
        return False
    return StructureMatcher(attempt_supercell=False).fit_anonymous(pa.structure, pb.structure)


def _reduced(counts: Sequence[int]) -> tuple[int, ...]:
    divisor = math.gcd(*counts)
    return tuple(c // divisor for c in counts)


def _assignments(proto: Prototype, elements: tuple[str, ...],
                 charge_balanced: bool) -> Iterator[tuple[tuple[str, ...], tuple[int, ...] | None, bool]]:
    """Every injective assignment of ``elements`` to the sublattices of ``proto`` that the filter keeps,
    with its oxidation states (None for intermetallics and unbalanced ones) and whether it passes."""
    ionic = proto.kind == "ionic"
    allowed = {"cation": [e for e in elements if any(q > 0 for q in oxidation_states(e))],
               "anion": [e for e in elements if any(q < 0 for q in oxidation_states(e))],
               "metal": [e for e in elements if is_metallic(e)]}
    options = [allowed[s.role] if charge_balanced else list(elements) for s in proto.sublattices]
    total = math.prod(len(o) for o in options)
    if total > MAX_ASSIGNMENTS:
        raise ValueError(f"prototype {proto.name!r} with {len(proto.sublattices)} sublattices and "
                         f"{len(elements)} elements gives {total:,} assignments (limit {MAX_ASSIGNMENTS:,}); "
                         f"pass fewer elements")
    roles = [s.role for s in proto.sublattices]
    for assignment in product(*options):
        if len(set(assignment)) < len(assignment):
            continue
        if ionic:
            oxidation = balance_charges(assignment, proto.counts, roles)
            passes = oxidation is not None
        else:
            oxidation, passes = None, all(is_metallic(e) for e in assignment)
        if passes or not charge_balanced:
            yield assignment, oxidation, passes


@lru_cache(maxsize=8)
def _pool(elements: tuple[str, ...], prototypes: tuple[str, ...], charge_balanced: bool) -> tuple[_Pick, ...]:
    """All distinct candidates in canonical order (see the module rules); cached for re-iteration."""
    representative: dict[str, str] = {}
    for name in prototypes:  # the first prototype of each structure type stands for it
        firsts = [p for p, r in representative.items() if p == r]
        representative[name] = next((r for r in firsts if _same_structure_type(r, name)), name)
    best: dict[tuple, tuple[tuple, _Pick]] = {}
    for order, name in enumerate(prototypes):
        proto = _prototype(name)
        reduced = _reduced(proto.counts)
        volume = proto.structure.volume / len(proto.structure)
        for assignment, oxidation, passes in _assignments(proto, elements, charge_balanced):
            key = (representative[name], tuple(sorted(zip(assignment, reduced))))
            rank = (not passes, order, volume * proto.scale(assignment, oxidation) ** 3,
                    tuple(_Z[e] for e in assignment))
            if key not in best or rank < best[key][0]:
                best[key] = (rank, (name, assignment, oxidation))
    ordered = sorted(best.items(), key=lambda item: (prototypes.index(item[1][1][0]), item[0][1]))
    return tuple(pick for _, (_, pick) in ordered)


def _select(elements: tuple[str, ...], prototypes: tuple[str, ...], n: int | None, seed: int,
            charge_balanced: bool) -> list[_Pick]:
    pool = _pool(elements, prototypes, charge_balanced)
    if n is None or n >= len(pool):
        return list(pool)
    return [pool[i] for i in sorted(random.Random(seed).sample(range(len(pool)), n))]


def _record(pick: _Pick) -> StructureRecord:
    name, elements, oxidation = pick
    structure = _prototype(name).substitute(elements, oxidation)
    formula = structure.composition.reduced_formula
    return StructureRecord(f"cand-{name}-{formula}", structure, {}, f"substitution:{name}")


def _check_n(n: int | None) -> None:
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"n must be a non-negative integer or None (the whole pool), got {n!r}")


def generate_candidates(elements: Sequence[str], prototypes: Sequence[str], n: int | None = None,
                        seed: int = 0, charge_balanced: bool = True) -> list[StructureRecord]:
    """Candidate structures from substituting ``elements`` into ``prototypes`` (module docstring: rules).

    ``prototypes`` are built-in names, AFLOW labels or unique aliases (see ``list_prototypes()``);
    ``n`` caps the number returned (a ``seed``-determined sample), None returns the whole pool.
    """
    _check_n(n)
    elements, prototypes = _normalise_elements(elements), _normalise_prototypes(prototypes)
    return [_record(pick) for pick in _select(elements, prototypes, n, seed, charge_balanced)]


class CandidateSource(Source):
    """The records of :func:`generate_candidates` as a :class:`Source`; structures are built lazily."""

    targets: tuple[str, ...] = ()

    def __init__(self, elements: Sequence[str], prototypes: Sequence[str], n: int | None = None,
                 seed: int = 0, charge_balanced: bool = True) -> None:
        _check_n(n)
        self.elements = _normalise_elements(elements)
        self.prototypes = _normalise_prototypes(prototypes)
        self.n, self.seed, self.charge_balanced = n, seed, charge_balanced
        self._selection: list[_Pick] | None = None

    def __iter__(self) -> Iterator[StructureRecord]:
        return self.iter_range(0, self.count())

    def _picks(self) -> list[_Pick]:
        """The selected (prototype, elements, oxidation states), enumerated once per instance and kept
        when the source is pickled, so Ray workers receive the selection instead of recomputing it."""
        if self._selection is None:
            self._selection = _select(self.elements, self.prototypes, self.n, self.seed, self.charge_balanced)
        return self._selection

    def count(self) -> int:
        """Number of candidates (the pool is enumerated without building structures)."""
        return len(self._picks())

    def iter_range(self, start: int, stop: int) -> Iterator[StructureRecord]:
        """Candidates ``start`` to ``stop - 1``, built lazily (a Ray worker builds only its shard)."""
        return (_record(pick) for pick in self._picks()[start:stop])

    def fingerprint(self) -> str:
        """Digest of the normalised arguments, the rules version and pymatgen's version (its data tables)."""
        return hash_strings("candidates", RULES_VERSION, pymatgen.core.__version__, ",".join(self.elements),
                            ",".join(self.prototypes), str(self.n), str(self.seed), str(self.charge_balanced))

    def describe(self) -> str:
        size = "all" if self.n is None else f"n={self.n}, seed={self.seed}"
        return (f"CandidateSource({len(self.elements)} elements x {', '.join(self.prototypes)}; {size}; "
                f"{'charge-balanced' if self.charge_balanced else 'unfiltered'})")

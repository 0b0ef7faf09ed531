"""Prototype crystal structures to substitute elements into.

Two libraries, one :class:`Prototype` type:

* seven built-in types, each built from its space group and Wyckoff positions with
  ``Structure.from_spacegroup`` (primitive cell kept): ``rocksalt`` (NaCl, Fm-3m), ``zincblende``
  (ZnS, F-43m), ``wurtzite`` (ZnO, P6_3mc), ``fluorite`` (CaF2, Fm-3m), ``perovskite`` (cubic SrTiO3,
  Pm-3m), ``spinel`` (normal MgAl2O4, Fd-3m) and ``heusler`` (full Heusler Cu2MnAl, L2_1, Fm-3m);
* the AFLOW prototype library that pymatgen ships (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``,
  288 entries), named by AFLOW label (``A_cF4_225_a``) or by a unique mineral name or Strukturbericht
  designation (``"Halite"``, ``"B1"``, ``"L2_1"``). Labels shared by several entries get the reference
  formula appended (``AB_oP8_62_c_c-FeB``).

A sublattice is the set of sites one element occupies in the reference compound. Its role is
``cation`` (positive oxidation state), ``anion`` (negative) or ``metal`` (intermetallic, no charge).
AFLOW roles are inferred from the reference compound with :func:`balance_charges`; a reference with no
solution (alloys, elements, polyanions outside the tabulated states) makes an intermetallic prototype.

Lattice scaling, ``Prototype.scale`` (a linear factor on the template lattice, shape kept):

* ``"bond"`` (built-in ionic): the shortest cation-anion distance of every (cation, anion) sublattice
  pair is at least the sum of Shannon ionic radii at the sublattice's coordination (closest tabulated
  coordination, high spin preferred); the factor is the largest such ratio. A pair with an ion Shannon
  does not tabulate (e.g. As3-, C4-), or without oxidation states, uses the sum of atomic radii.
* ``"volume"`` (built-in intermetallic): cell volume = sum of elemental volumes per atom
  (molar volume / N_A; Zen's law).
* ``"reference"`` (AFLOW): the reference lattice times (sum over sites of the candidate's Shannon
  radii, coordination 6) / (same sum for the reference compound) when both are ionic with tabulated ions;
  otherwise the reference volume times the ratio of the sums of elemental volumes. The reference
  compound reproduces its own cell, so errors of the radii largely cancel.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
import json
import math
import operator
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property, lru_cache
from itertools import product
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup

AVOGADRO = 6.02214076e23
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9,
          "X": 10, "XI": 11, "XII": 12, "XIV": 14}

#: Elements candidates may use: H to Pu, the range pymatgen tabulates radii and volumes for.
SUPPORTED_ELEMENTS: tuple[str, ...] = tuple(Element.from_Z(z).symbol for z in range(1, 95))


@dataclass(frozen=True)
class Sublattice:
    """The sites one element occupies: ``label`` (A, B, X...), ``role``, ``count`` sites in the template
    cell, coordination number ``cn`` used for Shannon radii, and the ``reference`` element."""

    label: str
    role: str
    count: int
    cn: int
    reference: str


@dataclass(frozen=True, eq=False)
class Prototype:
    """A template ``structure`` (the reference compound) whose ``sublattices`` receive new elements.

    ``site_sublattice[k]`` is the sublattice of site ``k``; ``contacts`` holds, for each (cation, anion)
    sublattice pair, the shortest distance in the template (used by the ``"bond"`` rule);
    ``reference_oxidation`` holds the reference compound's states for ``"reference"`` scaling (AFLOW, ionic).
    """

    name: str
    structure: Structure
    sublattices: tuple[Sublattice, ...]
    site_sublattice: tuple[int, ...]
    scaling: str
    source: str
    description: str
    aliases: tuple[str, ...] = ()
    contacts: tuple[tuple[int, int, float], ...] = ()
    reference_oxidation: tuple[int, ...] | None = None

    @property
    def kind(self) -> str:
        """``"ionic"`` when any sublattice is a cation or anion, else ``"intermetallic"``."""
        return "intermetallic" if all(s.role == "metal" for s in self.sublattices) else "ionic"

    @cached_property
    def counts(self) -> tuple[int, ...]:
        """Sites per sublattice in the template cell."""
        return tuple(s.count for s in self.sublattices)

    def scale(self, elements: Sequence[str], oxidation: Sequence[int] | None = None) -> float:
        """Linear factor on the template lattice for ``elements`` (one per sublattice) and their oxidation
        states (None: not charge balanced); see the module docstring for the three rules."""
        if self.scaling == "bond":
            return max(self._bond_length(elements, oxidation, i, j) / d for i, j, d in self.contacts)
        if self.scaling == "volume":
            return (self._sum(elemental_volume, elements) / self.structure.volume) ** (1 / 3)
        reference = [s.reference for s in self.sublattices]
        if oxidation is not None and self.reference_oxidation is not None:
            new = self._sum(shannon_radius, elements, oxidation)
            old = self._sum(shannon_radius, reference, self.reference_oxidation)
            if new is not None and old is not None:
                return new / old
        return (self._sum(elemental_volume, elements) / self._sum(elemental_volume, reference)) ** (1 / 3)

    def _sum(self, per_site: Callable[..., float | None], elements: Sequence[str],
             oxidation: Sequence[int] | None = None) -> float | None:
        """Sum over sites of ``per_site(element)`` or ``per_site(element, state, cn)``; None if any is."""
        total = 0.0
        for k, (sub, element) in enumerate(zip(self.sublattices, elements)):
            value = per_site(element) if oxidation is None else per_site(element, oxidation[k], sub.cn)
            if value is None:
                return None
            total += sub.count * value
        return total

    def _bond_length(self, elements: Sequence[str], oxidation: Sequence[int] | None, i: int, j: int) -> float:
        """Target i-j distance: sum of Shannon radii, or of atomic radii when either ion is not tabulated."""
        if oxidation is not None:
            ri = shannon_radius(elements[i], oxidation[i], self.sublattices[i].cn)
            rj = shannon_radius(elements[j], oxidation[j], self.sublattices[j].cn)
            if ri is not None and rj is not None:
                return ri + rj
        return atomic_radius(elements[i]) + atomic_radius(elements[j])

    def substitute(self, elements: Sequence[str], oxidation: Sequence[int] | None = None) -> Structure:
        """The template with ``elements[i]`` on sublattice ``i`` and the lattice scaled by :meth:`scale`."""
        species = [_site_species(elements[i]) for i in self.site_sublattice]
        matrix = self.structure.lattice.matrix * self.scale(elements, oxidation)
        return Structure(Lattice(matrix), species, self.structure.frac_coords)


# ---------------------------------------------------------------- element data (cached, warning-free)

@cache
def _site_species(symbol: str) -> Composition:
    """A shared one-element Composition: sites built from it skip species parsing (~35 % faster)."""
    return Composition({Element(symbol): 1})


@cache
def _data(symbol: str, name: str) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(Element(symbol), name)


@cache
def oxidation_states(symbol: str) -> tuple[int, ...]:
    """Non-zero oxidation states: pymatgen's common states united with those observed in the ICSD."""
    states = set(_data(symbol, "common_oxidation_states")) | set(_data(symbol, "icsd_oxidation_states"))
    return tuple(sorted(states - {0}))


def electronegativity(symbol: str) -> float:
    """Pauling electronegativity (NaN for elements without one, e.g. He, Ne, Ar)."""
    return float(_data(symbol, "X"))


def is_metallic(symbol: str) -> bool:
    """True for metals and metalloids (B, Si, Ge, As, Sb, Te, Po): elements fit for intermetallics."""
    return bool(_data(symbol, "is_metal") or _data(symbol, "is_metalloid"))


@cache
def atomic_radius(symbol: str) -> float:
    """Empirical atomic radius (Å); calculated, then van der Waals radius where it is missing."""
    for name in ("atomic_radius", "atomic_radius_calculated", "van_der_waals_radius"):
        value = _data(symbol, name)
        if value is not None:
            return float(value)
    raise ValueError(f"pymatgen has no radius for {symbol}")


@cache
def elemental_volume(symbol: str) -> float:
    """Volume per atom (Å^3) of the elemental solid: molar volume / N_A, else an atomic-radius sphere
    at 74 % packing."""
    molar = _data(symbol, "molar_volume")
    if molar is not None:
        return float(molar) * 1e24 / AVOGADRO
    return 4 / 3 * math.pi * atomic_radius(symbol) ** 3 / 0.74


@cache
def shannon_radius(symbol: str, oxidation: int, cn: int) -> float | None:
    """Shannon ionic radius (Å) at the tabulated coordination closest to ``cn``; None if not tabulated
    (or not positive)."""
    table = Element(symbol).data.get("Shannon radii", {}).get(str(oxidation))
    if not table:
        return None

    def distance(key: str) -> tuple[int, bool, str]:
        numeral, suffix = re.fullmatch(r"([IVX]+)(\w*)", key).groups()
        return abs(_ROMAN[numeral] - cn), bool(suffix), key

    spins = table[min(table, key=distance)]
    entry = spins.get("High Spin") or spins.get("") or next(iter(spins.values()))
    radius = float(entry["ionic_radius"])
    return radius if radius > 0 else None  # Shannon lists a few negative radii (e.g. H+)


def balance_charges(elements: Sequence[str], counts: Sequence[int],
                    roles: Sequence[str] | None = None) -> tuple[int, ...] | None:
    """One oxidation state per sublattice making the cell neutral, or None when there is none.

    Rule: states from :func:`oxidation_states`; ``sum(count * state) == 0``; a ``cation`` sublattice takes
    a positive state and an ``anion`` one a negative state (``roles=None``: any sign); every anion is more
    electronegative (Pauling) than every cation. Among solutions the one using fewest non-common states,
    then the smallest total charge, then the lowest states wins.
    """
    options = []
    for k, symbol in enumerate(elements):
        states = oxidation_states(symbol)
        role = roles[k] if roles is not None else None
        if role == "cation":
            states = tuple(q for q in states if q > 0)
        elif role == "anion":
            states = tuple(q for q in states if q < 0)
        if not states:
            return None
        options.append(states)
    best: tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...]] | None = None
    last_count, last_options = counts[-1], set(options[-1])
    for head in product(*options[:-1]):
        rest = -sum(map(operator.mul, counts, head))
        if rest % last_count or rest // last_count not in last_options:
            continue
        states = (*head, rest // last_count)
        cations = [electronegativity(e) for e, q in zip(elements, states) if q > 0]
        anions = [electronegativity(e) for e, q in zip(elements, states) if q < 0]
        if not all(c < a for c in cations for a in anions):  # also rejects NaN
            continue
        common = [q in _data(e, "common_oxidation_states") for e, q in zip(elements, states)]
        score = (common.count(False), sum(n * abs(q) for n, q in zip(counts, states)), states)
        if best is None or score < best[0]:
            best = (score, states)
    return best[1] if best else None


# ---------------------------------------------------------------- built-in prototypes

#: name: (space group, reference lattice, scaling rule, note, [(label, role, cn, element, Wyckoff coords)])
_BUILTIN: dict[str, tuple] = {
    "rocksalt": ("Fm-3m", Lattice.cubic(5.640), "bond", "NaCl, B1", [
        ("A", "cation", 6, "Na", (0, 0, 0)),
        ("X", "anion", 6, "Cl", (0.5, 0.5, 0.5))]),
    "zincblende": ("F-43m", Lattice.cubic(5.409), "bond", "ZnS, B3", [
        ("A", "cation", 4, "Zn", (0, 0, 0)),
        ("X", "anion", 4, "S", (0.25, 0.25, 0.25))]),
    "wurtzite": ("P6_3mc", Lattice.hexagonal(3.250, 5.207), "bond", "ZnO, B4", [
        ("A", "cation", 4, "Zn", (1 / 3, 2 / 3, 0)),
        ("X", "anion", 4, "O", (1 / 3, 2 / 3, 0.382))]),
    "fluorite": ("Fm-3m", Lattice.cubic(5.463), "bond", "CaF2, C1", [
        ("A", "cation", 8, "Ca", (0, 0, 0)),
        ("X", "anion", 4, "F", (0.25, 0.25, 0.25))]),
    "perovskite": ("Pm-3m", Lattice.cubic(3.905), "bond", "cubic SrTiO3, E2_1", [
        ("A", "cation", 12, "Sr", (0.5, 0.5, 0.5)),
        ("B", "cation", 6, "Ti", (0, 0, 0)),
        ("X", "anion", 6, "O", (0.5, 0, 0))]),
    # Fd-3m in pymatgen's origin choice 1: A 8a, B 16d, X 32e (x = 0.2624 + 1/8 for MgAl2O4).
    "spinel": ("Fd-3m", Lattice.cubic(8.083), "bond", "normal spinel MgAl2O4, H1_1", [
        ("A", "cation", 4, "Mg", (0, 0, 0)),
        ("B", "cation", 6, "Al", (0.625, 0.625, 0.625)),
        ("X", "anion", 4, "O", (0.3874, 0.3874, 0.3874))]),
    "heusler": ("Fm-3m", Lattice.cubic(5.950), "volume", "full Heusler X2YZ Cu2MnAl, L2_1", [
        ("X", "metal", 8, "Cu", (0.25, 0.25, 0.25)),
        ("Y", "metal", 8, "Mn", (0, 0, 0)),
        ("Z", "metal", 8, "Al", (0.5, 0.5, 0.5))]),
}
#: The built-in prototype names, the natural default for candidate generation.
BUILTIN_PROTOTYPES: tuple[str, ...] = tuple(_BUILTIN)


def _make(name: str, structure: Structure, labels: Sequence[str], roles: Sequence[str], cns: Sequence[int],
          references: Sequence[str], **fields: object) -> Prototype:
    """Assemble a Prototype from a template whose sublattice ``k`` holds element ``references[k]``."""
    site_sublattice = tuple(references.index(site.specie.symbol) for site in structure)
    counts = Counter(site_sublattice)
    sublattices = tuple(Sublattice(lab, role, counts[k], cn, ref)
                        for k, (lab, role, cn, ref) in enumerate(zip(labels, roles, cns, references)))
    contacts = []
    if fields.get("scaling") == "bond":
        distances = structure.distance_matrix
        owner = np.array(site_sublattice)
        for i, j in product(range(len(references)), repeat=2):
            if roles[i] == "cation" and roles[j] == "anion":
                contacts.append((i, j, float(distances[np.ix_(owner == i, owner == j)].min())))
    return Prototype(name, structure, sublattices, site_sublattice, contacts=tuple(contacts), **fields)


@cache
def _space_group(symbol: str) -> SpaceGroup:
    """Keeps each space group alive: pymatgen caches them weakly and rebuilding Fm-3m costs ~0.3 s."""
    return SpaceGroup(symbol)


def _builtin(name: str) -> Prototype:
    group, lattice, scaling, note, sites = _BUILTIN[name]
    labels, roles, cns, references, coords = zip(*sites)
    _space_group(group)  # held, so from_spacegroup below reuses the cached instance
    structure = Structure.from_spacegroup(group, lattice, list(references), list(coords))
    structure = structure.get_primitive_structure()
    return _make(name, structure, labels, roles, cns, references, scaling=scaling, source="builtin",
                 description=f"{note} ({group}); sublattices {'/'.join(labels)}")


# ---------------------------------------------------------------- AFLOW prototypes (pymatgen package data)

def _normalise(alias: str) -> str:
    return re.sub(r"[\s_\-(),']", "", alias.lower())


def _tag_aliases(tags: dict[str, str]) -> list[str]:
    """Mineral names (comma-separated in the library) and the Strukturbericht designation, if any."""
    return [a for a in [*tags["mineral"].split(", "), tags["strukturbericht"]] if a and a != "None"]


@lru_cache(maxsize=1)
def _aflow_library() -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(canonical name -> raw entry, normalised alias -> canonical names), read from the raw JSON (fast:
    importing ``pymatgen.analysis.prototypes`` would deserialise every entry at import)."""
    package = importlib.util.find_spec("pymatgen.analysis.prototypes").submodule_search_locations[0]
    with gzip.open(Path(package) / "aflow_prototypes.json.gz", "rt") as handle:
        entries = json.load(handle)
    labels = Counter(entry["tags"]["aflow"] for entry in entries)
    by_name: dict[str, dict] = {}
    aliases: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        tags, name = entry["tags"], entry["tags"]["aflow"]
        if labels[name] > 1:
            formula = Structure.from_dict(entry["snl"]).composition.reduced_formula
            suffix = formula if f"{name}-{formula}" not in by_name else tags["strukturbericht"]
            name = f"{name}-{suffix}"
        by_name[name] = entry
        for alias in [name, tags["aflow"], *_tag_aliases(tags)]:
            aliases[_normalise(alias)].append(name)
    return by_name, dict(aliases)


def _aflow(name: str) -> Prototype:
    entry = _aflow_library()[0][name]
    structure = Structure.from_dict(entry["snl"]).get_reduced_structure()
    references = sorted({site.specie.symbol for site in structure})  # AFLOW letters: alphabetical elements
    counts = [structure.composition[el] for el in references]
    oxidation = balance_charges(references, [int(n) for n in counts])
    roles = ["metal"] * len(references) if oxidation is None else ["cation" if q > 0 else "anion"
                                                                    for q in oxidation]
    tags = entry["tags"]
    aliases = tuple(_tag_aliases(tags))
    letters = [chr(ord("A") + k) for k in range(len(references))]
    return _make(name, structure, letters, roles, [6] * len(references), references, scaling="reference",
                 source="aflow", aliases=aliases, reference_oxidation=oxidation,
                 description=f"AFLOW {tags['aflow']} ({structure.composition.reduced_formula}"
                             f"{', ' + ', '.join(aliases) if aliases else ''})")


# ---------------------------------------------------------------- lookup

def list_prototypes() -> list[str]:
    """Canonical names: the built-ins, then every AFLOW prototype (sorted labels)."""
    return [*BUILTIN_PROTOTYPES, *sorted(_aflow_library()[0])]


def resolve_prototype(name: str) -> str:
    """The canonical name for a built-in name, AFLOW label or unique mineral/Strukturbericht alias."""
    by_name, aliases = _aflow_library()
    if name.lower() in _BUILTIN:
        return name.lower()
    if name in by_name:
        return name
    builtin = [b for b in _BUILTIN if _normalise(b) == _normalise(name)]
    matches = builtin or sorted(set(aliases.get(_normalise(name), [])))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"prototype {name!r} is ambiguous: it names {', '.join(matches)}; pass one of these")
    close = difflib.get_close_matches(name, [*BUILTIN_PROTOTYPES, *by_name], n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"unknown prototype {name!r}: {hint}use a built-in ({', '.join(BUILTIN_PROTOTYPES)}), "
                     f"an AFLOW label such as 'A_cF4_225_a' or a unique mineral/Strukturbericht name; "
                     f"list_prototypes() gives all {len(by_name) + len(_BUILTIN)} names")


@cache
def _prototype(name: str) -> Prototype:
    return _builtin(name) if name in _BUILTIN else _aflow(name)


def get_prototype(name: str) -> Prototype:
    """The :class:`Prototype` called ``name`` (see :func:`resolve_prototype`); its structure is a copy."""
    prototype = _prototype(resolve_prototype(name))
    return replace(prototype, structure=prototype.structure.copy())

"""Chemical plausibility: keep a structure only when its chemistry could exist, and say why when not.

:func:`assess` is a pure function of a :class:`StructureRecord`. It first finds the prototype the structure
was made from (see :func:`match_prototype`), then applies, in this order, the rules named in
:class:`PlausibilitySettings` and reports the first that fails, with the numbers that failed it:

* ``charge_balance`` (a). One oxidation state per element (per sublattice for a prototype, with the
  sublattice's sign) whose sum over the cell is zero, using only *common* states: a state is common when it
  makes up at least ``min_state_share`` of the element's charged occurrences in the ICSD, from the occurrence
  table pymatgen ships (``pymatgen/core/icsd_bv.yaml``, the table ``Composition.oxi_state_guesses`` scores
  with; elements it lacks fall back to pymatgen's ``common_oxidation_states``). We use pymatgen's table rather
  than SMACT because it is already a dependency and the candidate generator uses the same element data; we
  enumerate the states ourselves because ``oxi_state_guesses`` works on a composition and cannot require a
  cation sublattice to be positive. Solutions are ranked by the product of their states' shares. With a 4 %
  default Ti2+ (4.8 %, TiO) is common while N- (3.4 %), S2+ (1.4 %), Se2+ (0.9 %) and Br+ (0.3 %) are not.
  One state per element, as SMACT's ``smact_validity``: mixed valence (Fe3O4 read as one composition) fails.
* ``electronegativity`` (b), the Pauling test: every cation is less electronegative than every anion
  (Pauling scale), for at least one solution of (a).
* ``geometry`` (c), from Shannon radii of the assigned states at the sublattice's coordination, for the
  built-in ionic prototypes only (their coordination numbers are known):

  - perovskite ABX3: Goldschmidt tolerance factor t = (r_A + r_X) / (√2 (r_B + r_X)) within
    ``tolerance_factor`` (default 0.813-1.107, Li, Soh & Wu, Acta Cryst. B 64, 702 (2008)) and octahedral
    factor μ = r_B / r_X within ``octahedral_factor`` (default 0.414-0.895: the lower bound is √2 - 1, the
    smallest B cation that touches its six anions (Pauling's first rule), the upper one from Li et al. 2008);
  - rocksalt, zincblende, wurtzite, fluorite and the spinel A and B sites: the radius ratio r_cation / r_anion
    gives Pauling's coordination (limits 0.155 / 0.225 / 0.414 / 0.732 / 1.0 for 3 / 4 / 6 / 8 / 12; Pauling,
    J. Am. Chem. Soc. 51, 1010 (1929)); a site passes when that coordination is at most ``radius_ratio_slack``
    steps (in 2, 3, 4, 6, 8, 12) from the site's own. The slack is there because the rule is only a
    tendency (George et al., Angew. Chem. 59, 7569 (2020)): MgAl2O4's Al (ratio 0.39, octahedral) and LiI
    pass; a cation that rattles two steps too small or is two steps too large fails. In AX structures whose
    two ions have the same coordination (rocksalt, zincblende, wurtzite) the smaller-over-larger ratio is
    used (KF: 0.96).

  When Shannon does not tabulate an assigned ion at all (Sc2+, W2+, S-, Se-: states known from a few
  compounds with other structures) the prototype's geometry cannot be confirmed and the structure fails
  ``geometry``, naming the ion: in the demo's candidates these were the spinels and perovskites that only
  balance with such states (Rb2ScBr4, RbCaS3), not real members of the structure type.
* ``metals_only``: intermetallic prototypes (Heusler, AFLOW alloys) keep only metals and metalloids; an
  unlabelled structure made only of metals is treated the same way.

A structure without a prototype (a CIF, a Materials Project entry, a relaxed candidate) gets (a) and (b);
(c) is skipped because deciding its prototype would need a structure match per record, too slow for a
filter that runs before every screen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import product
from pathlib import Path
from typing import Literal

import numpy as np
import pymatgen.core
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hybridmat.data.prototypes import (
    BUILTIN_PROTOTYPES,
    Prototype,
    electronegativity,
    get_prototype,
    is_metallic,
    resolve_prototype,
    shannon_radius,
)
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source, hash_strings

#: The ionic rules in the order they are applied.
IONIC_RULES: tuple[str, ...] = ("charge_balance", "electronegativity", "geometry")
#: The rule applied to intermetallic prototypes and all-metal structures.
METALS_ONLY = "metals_only"
#: Pauling's radius-ratio limits: the smallest ratio r_cation / r_anion for each coordination number.
PAULING_LIMITS: tuple[tuple[float, int], ...] = ((0.155, 3), (0.225, 4), (0.414, 6), (0.732, 8), (1.0, 12))
_COORDINATIONS = (2, 3, 4, 6, 8, 12)
_COORDINATE_TOLERANCE = 1e-3  # fractional coordinates / relative lattice lengths of a prototype match


class PlausibilitySettings(BaseModel):
    """Which rules apply and their windows (defaults and sources in the module docstring); also the
    ``filter:`` section of a screen job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Literal["charge_balance", "electronegativity", "geometry"], ...] = Field(
        IONIC_RULES, description="Ionic rules to apply, in order (intermetallic prototypes always get metals_only)")
    min_state_share: float = Field(0.04, gt=0, lt=1, description="Share of an element's ICSD occurrences "
                                                                  "that makes an oxidation state common")
    tolerance_factor: tuple[float, float] = Field((0.813, 1.107), description="Goldschmidt t window (perovskites)")
    octahedral_factor: tuple[float, float] = Field((0.414, 0.895), description="r_B / r_X window (perovskites)")
    radius_ratio_slack: int = Field(1, ge=0, description="Coordination steps a radius ratio may be off by")

    @field_validator("tolerance_factor", "octahedral_factor")
    @classmethod
    def _window(cls, window: tuple[float, float]) -> tuple[float, float]:
        if not 0 < window[0] < window[1]:
            raise ValueError(f"a window is [low, high] with 0 < low < high, got {list(window)}")
        return window

    def fingerprint(self) -> str:
        """Digest of the settings and pymatgen's version (its element tables)."""
        return hash_strings("plausibility", pymatgen.core.__version__, repr(sorted(self.model_dump().items())))


@dataclass(frozen=True)
class Verdict:
    """The outcome for one record: ``rule`` that failed (None when kept) and ``reason`` with the numbers;
    for a kept record ``reason`` lists the oxidation states and geometry numbers that passed."""

    id: str
    formula: str
    prototype: str | None
    rule: str | None
    reason: str

    @property
    def kept(self) -> bool:
        return self.rule is None


# ---------------------------------------------------------------- prototype of a record

@cache
def _template(name: str) -> Prototype:
    return get_prototype(name)


def _label(record: StructureRecord) -> str | None:
    """The prototype the record says it comes from: provenance ``substitution:<name>``, else an id
    ``cand-<name>-<formula>`` (a candidates table read back loses its provenance)."""
    if record.provenance.startswith("substitution:"):
        return record.provenance.partition(":")[2]
    if record.id.startswith("cand-") and record.id.count("-") >= 2:
        return record.id[len("cand-"):].rsplit("-", 1)[0]
    return None


def _fits(proto: Prototype, record: StructureRecord) -> tuple[str, ...] | None:
    """The element of each sublattice when ``record`` is ``proto``'s template with one element per
    sublattice (distinct ones), its fractional coordinates and a uniformly scaled lattice; else None."""
    structure, template = record.structure, proto.structure
    if len(structure) != len(template):
        return None
    elements: list[str | None] = [None] * len(proto.sublattices)
    for site, k in zip(structure, proto.site_sublattice):
        if not site.is_ordered:
            return None
        symbol = site.specie.symbol
        if elements[k] not in (None, symbol):
            return None
        elements[k] = symbol
    if len(set(elements)) != len(elements):
        return None
    shift = structure.frac_coords - template.frac_coords
    if np.abs(shift - np.round(shift)).max() > _COORDINATE_TOLERANCE:
        return None
    scale = (structure.volume / template.volume) ** (1 / 3)
    if not np.allclose(structure.lattice.matrix, scale * template.lattice.matrix,
                       atol=_COORDINATE_TOLERANCE * scale * max(template.lattice.abc)):
        return None
    return tuple(elements)  # type: ignore[arg-type]


def match_prototype(record: StructureRecord) -> tuple[Prototype, tuple[str, ...]] | None:
    """The prototype ``record`` was built from and the element on each of its sublattices, or None.

    Tried: the prototype named by the record (see :func:`_label`), then the built-in ones; each must fit
    exactly (same sites in the same order, same fractional coordinates, lattice scaled uniformly), so a
    label is never trusted without the structure agreeing and a relaxed structure counts as unlabelled.
    """
    label = _label(record)
    names: list[str] = []
    if label is not None:
        try:
            names.append(resolve_prototype(label))
        except ValueError:
            pass
    names += [name for name in BUILTIN_PROTOTYPES if name not in names]
    for name in names:
        proto = _template(name)
        elements = _fits(proto, record)
        if elements is not None:
            return proto, elements
    return None


# ---------------------------------------------------------------- (a) common oxidation states

@lru_cache(maxsize=1)
def _icsd_occurrence() -> dict[str, dict[int, int]]:
    """ICSD occurrences of each charged species, by element (pymatgen's ``icsd_bv.yaml``)."""
    with open(Path(pymatgen.core.__file__).parent / "icsd_bv.yaml") as handle:
        table = yaml.safe_load(handle)["occurrence"]
    counts: dict[str, dict[int, int]] = {}
    for species, count in table.items():
        symbol, magnitude, sign = re.fullmatch(r"([A-Z][a-z]?)(\d*)([+-])", species).groups()
        state = int(magnitude or 1) * (1 if sign == "+" else -1)
        if state:
            counts.setdefault(symbol, {})[state] = int(count)
    return counts


@cache
def state_shares(symbol: str) -> dict[int, float]:
    """Share of each non-zero oxidation state among the element's charged ICSD occurrences; elements not
    in the table get pymatgen's common states, shared equally."""
    counts = _icsd_occurrence().get(symbol)
    if not counts:
        common = [q for q in pymatgen.core.Element(symbol).common_oxidation_states if q]
        return {q: 1 / len(common) for q in common}
    total = sum(counts.values())
    return {q: n / total for q, n in sorted(counts.items())}


def _signed(shares: dict[int, float], role: str | None) -> dict[int, float]:
    if role == "cation":
        return {q: p for q, p in shares.items() if q > 0}
    if role == "anion":
        return {q: p for q, p in shares.items() if q < 0}
    return shares


def _balanced(elements: Sequence[str], counts: Sequence[int], roles: Sequence[str | None],
              min_share: float) -> list[tuple[float, tuple[int, ...]]]:
    """Neutral assignments (one state per unit) whose states all have a share >= ``min_share``, most
    probable first, as (product of shares, states)."""
    options = [{q: p for q, p in _signed(state_shares(e), role).items() if p >= min_share}
               for e, role in zip(elements, roles)]
    if not all(options):
        return []
    found = []
    for head in product(*[sorted(o) for o in options[:-1]]):
        rest = -sum(n * q for n, q in zip(counts, head))
        if rest % counts[-1] or rest // counts[-1] not in options[-1]:
            continue
        states = (*head, rest // counts[-1])
        found.append((math.prod(o[q] for o, q in zip(options, states)), states))
    return sorted(found, key=lambda item: (-item[0], item[1]))


def _pauling_failure(elements: Sequence[str], states: Sequence[int]) -> str | None:
    """Why ``states`` fail the Pauling test, or None when every cation is less electronegative than
    every anion."""
    for cation, q in zip(elements, states):
        for anion, r in zip(elements, states):
            if q > 0 > r and not electronegativity(cation) < electronegativity(anion):  # NaN fails too
                return (f"cation {_ion(cation, q)} (χ={electronegativity(cation):.2f}) is not less "
                        f"electronegative than anion {_ion(anion, r)} (χ={electronegativity(anion):.2f})")
    return None


def _ion(symbol: str, state: int) -> str:
    return f"{symbol}{abs(state) if abs(state) > 1 else ''}{'+' if state > 0 else '-'}"


def _ions(elements: Sequence[str], states: Sequence[int]) -> str:
    return " ".join(_ion(e, q) for e, q in zip(elements, states))


def _charge_failure(elements: Sequence[str], counts: Sequence[int], roles: Sequence[str | None],
                    min_share: float) -> str:
    """The reason no common states balance: the most probable balance with rarer states, if any."""
    rare = _balanced(elements, counts, roles, min_share=1e-12)
    sites = "" if roles[0] is None else " with " + ", ".join(
        f"{e} on {'an' if role == 'anion' else 'a'} {role} site" for e, role in zip(elements, roles))
    if not rare:
        return f"no neutral combination of oxidation states{sites}, even rare ones"
    _, states = rare[0]
    scarce = [f"{_ion(e, q)} ({state_shares(e)[q]:.1%} of {e} in the ICSD)"
              for e, q in zip(elements, states) if state_shares(e)[q] < min_share]
    return f"neutral only with {', '.join(scarce)}, below the {min_share:.0%} common-state share{sites}"


# ---------------------------------------------------------------- (c) geometry

def pauling_coordination(ratio: float) -> int:
    """The coordination number Pauling's radius-ratio rule predicts for r_cation / r_anion."""
    return next((cn for limit, cn in reversed(PAULING_LIMITS) if ratio >= limit), 2)


def _steps(cn_a: int, cn_b: int) -> int:
    position = {cn: k for k, cn in enumerate(_COORDINATIONS)}
    nearest = min(_COORDINATIONS, key=lambda c: abs(c - cn_a))
    return abs(position[nearest] - position[min(_COORDINATIONS, key=lambda c: abs(c - cn_b))])


def _geometry(proto: Prototype, elements: Sequence[str], states: Sequence[int],
              settings: PlausibilitySettings) -> tuple[bool, str]:
    """(passes, numbers) for a built-in ionic prototype; an ion without a Shannon radius fails."""
    radii = {}
    for sub, element, state in zip(proto.sublattices, elements, states):
        radius = shannon_radius(element, state, sub.cn)
        if radius is None:
            return False, f"Shannon has no radius for {_ion(element, state)}: the geometry cannot be confirmed"
        radii[sub.label] = (radius, sub)
    if proto.name == "perovskite":
        (r_a, _), (r_b, _), (r_x, _) = radii["A"], radii["B"], radii["X"]
        t, mu = (r_a + r_x) / (math.sqrt(2) * (r_b + r_x)), r_b / r_x
        (t_low, t_high), (mu_low, mu_high) = settings.tolerance_factor, settings.octahedral_factor
        numbers = (f"t={t:.3f} (window {t_low}-{t_high}), μ={mu:.3f} (window {mu_low}-{mu_high}) "
                   f"from r_A={r_a:.3f}, r_B={r_b:.3f}, r_X={r_x:.3f} Å")
        return t_low <= t <= t_high and mu_low <= mu <= mu_high, numbers
    (r_x, anion), = [(r, s) for r, s in radii.values() if s.role == "anion"]
    parts, passes = [], True
    for r_c, sub in (value for value in radii.values() if value[1].role == "cation"):
        ratio = r_c / r_x
        if sub.cn == anion.cn and ratio > 1:  # same polyhedron around both ions: smaller over larger
            ratio = 1 / ratio
        predicted = pauling_coordination(ratio)
        passes &= _steps(predicted, sub.cn) <= settings.radius_ratio_slack
        parts.append(f"{sub.label} site (CN {sub.cn}): r+/r-={ratio:.3f} -> CN {predicted}")
    return passes, "; ".join(parts) + f" (slack {settings.radius_ratio_slack} step)"


# ---------------------------------------------------------------- the filter

def assess(record: StructureRecord, settings: PlausibilitySettings = PlausibilitySettings()) -> Verdict:
    """The :class:`Verdict` for one record (rules and order in the module docstring)."""
    matched = match_prototype(record)
    formula = record.formula
    if matched is not None:
        proto, elements = matched
        name, counts = proto.name, proto.counts
        roles: tuple[str | None, ...] = tuple(s.role for s in proto.sublattices)
    else:
        proto, name = None, None
        composition = record.structure.composition.reduced_composition
        elements = tuple(sorted((e.symbol for e in composition.elements), key=electronegativity))
        counts = tuple(int(round(composition[e])) for e in elements)
        roles = ("metal",) * len(elements) if all(is_metallic(e) for e in elements) else (None,) * len(elements)

    def verdict(rule: str | None, reason: str) -> Verdict:
        return Verdict(record.id, formula, name, rule, reason)

    if all(role == "metal" for role in roles):
        nonmetals = [e for e in elements if not is_metallic(e)]
        if nonmetals:
            return verdict(METALS_ONLY, f"intermetallic prototype with non-metal(s) {', '.join(nonmetals)}")
        return verdict(None, "intermetallic: metals and metalloids only")
    if "charge_balance" in settings.rules:
        solutions = _balanced(elements, counts, roles, settings.min_state_share)
        if not solutions:
            return verdict("charge_balance", _charge_failure(elements, counts, roles, settings.min_state_share))
    else:
        solutions = _balanced(elements, counts, roles, min_share=1e-12)
        if not solutions:
            return verdict(None, "no oxidation states assigned: electronegativity and geometry not checked")
    if "electronegativity" in settings.rules:
        failures = [_pauling_failure(elements, states) for _, states in solutions]
        if all(failures):
            return verdict("electronegativity", f"{failures[0]} ({_ions(elements, solutions[0][1])})")
        solutions = [s for s, failure in zip(solutions, failures) if failure is None]
    ions = _ions(elements, solutions[0][1])
    if "geometry" not in settings.rules or proto is None or proto.source != "builtin":
        return verdict(None, f"{ions}; geometry not checked" + ("" if proto else " (no prototype)"))
    checks = [_geometry(proto, elements, states, settings) for _, states in solutions]
    passing = [k for k, (passes, _) in enumerate(checks) if passes]
    if not passing:
        return verdict("geometry", f"{checks[0][1]} ({ions})")
    best = passing[0]
    return verdict(None, f"{_ions(elements, solutions[best][1])}; {checks[best][1]}")


def assess_items(items: Iterable[SourceItem],
                 settings: PlausibilitySettings = PlausibilitySettings()) -> Iterator[tuple[SourceItem, Verdict]]:
    """Each record with its verdict; a :class:`RecordError` from the source becomes a verdict whose rule
    is the error's stage, so it is accounted for like a rejected record."""
    for item in items:
        if isinstance(item, RecordError):
            yield item, Verdict(item.id, "", None, item.stage, item.reason)
        else:
            yield item, assess(item, settings)


class FilteredSource(Source):
    """``source`` with every implausible record replaced by a ``RecordError`` of stage ``filter`` whose
    reason is ``<rule>: <numbers>``; row order and count are unchanged, so inputs = rows + errors holds."""

    def __init__(self, source: Source, settings: PlausibilitySettings = PlausibilitySettings()) -> None:
        self.source, self.settings = source, settings
        self.targets = source.targets

    def _filtered(self, items: Iterable[SourceItem]) -> Iterator[SourceItem]:
        for item, verdict in assess_items(items, self.settings):
            if isinstance(item, RecordError) or verdict.kept:
                yield item
            else:
                yield RecordError(item.id, "filter", f"{verdict.rule}: {verdict.reason}")

    def __iter__(self) -> Iterator[SourceItem]:
        return self._filtered(self.source)

    def iter_range(self, start: int, stop: int) -> Iterator[SourceItem]:
        return self._filtered(self.source.iter_range(start, stop))

    def count(self) -> int | None:
        return self.source.count()

    def fingerprint(self) -> str:
        return hash_strings("filtered", self.source.fingerprint(), self.settings.fingerprint())

    def describe(self) -> str:
        return f"FilteredSource({self.source.describe()}, rules={','.join(self.settings.rules)})"

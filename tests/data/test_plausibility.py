"""The plausibility filter on known chemistry: real compounds pass, the demo's implausible ones fail by rule."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from hybridmat.data.filtering import filter_records, rejected_path
from hybridmat.data.plausibility import FilteredSource, PlausibilitySettings, assess, match_prototype
from hybridmat.data.prototypes import get_prototype
from hybridmat.data.records import RecordError, StructureRecord
from hybridmat.data.source import Source
from hybridmat.data.tables import TableSource


class ListSource(Source):
    """A fixed list of items as a source."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def fingerprint(self) -> str:
        return "list"


def candidate(prototype: str, *elements: str) -> StructureRecord:
    """A structure made the way `hybridmat candidates` makes one (ideal prototype, uniform scaling)."""
    structure = get_prototype(prototype).substitute(elements)
    formula = structure.composition.reduced_formula
    return StructureRecord(f"cand-{prototype}-{formula}", structure, {}, f"substitution:{prototype}")


@pytest.mark.parametrize("prototype, elements", [
    ("perovskite", ("Ba", "Ti", "O")), ("perovskite", ("Sr", "Ti", "O")), ("perovskite", ("K", "Mg", "F")),
    ("rocksalt", ("Na", "Cl")), ("rocksalt", ("Mg", "O")), ("zincblende", ("Zn", "S")),
    ("fluorite", ("Ca", "F")), ("spinel", ("Mg", "Al", "O")),
])
def test_known_compounds_pass(prototype: str, elements: tuple[str, ...]) -> None:
    verdict = assess(candidate(prototype, *elements))
    assert verdict.kept, verdict.reason
    assert verdict.prototype == prototype


@pytest.mark.parametrize("prototype, elements, rule, named", [
    ("perovskite", ("S", "Cl", "F"), "charge_balance", "S2+"),
    ("fluorite", ("Ca", "N"), "charge_balance", "N-"),
    ("spinel", ("Cd", "Br", "Cl"), "charge_balance", "Br+"),
    ("spinel", ("S", "Br", "Cl"), "charge_balance", "S2+"),
    ("zincblende", ("K", "F"), "geometry", "CN 8"),
])
def test_implausible_compounds_fail_naming_rule_and_numbers(prototype: str, elements: tuple[str, ...],
                                                             rule: str, named: str) -> None:
    verdict = assess(candidate(prototype, *elements))
    assert verdict.rule == rule
    assert named in verdict.reason


def test_perovskite_geometry_reports_tolerance_and_octahedral_factors() -> None:
    kept = assess(candidate("perovskite", "Sr", "Ti", "O"))
    assert "t=1.002" in kept.reason and "μ=0.432" in kept.reason
    # Ba on the B site and Ti on the A site: charge balanced, but the octahedron cannot hold Ba2+
    flipped = assess(candidate("perovskite", "Ti", "Ba", "O"))
    assert flipped.rule in {"charge_balance", "geometry"}


def test_pauling_test_rejects_a_cation_more_electronegative_than_its_anion() -> None:
    # rocksalt with S (χ 2.58) on the cation site and Se (χ 2.55) on the anion site, rare states allowed
    settings = PlausibilitySettings(rules=("electronegativity",))
    verdict = assess(candidate("rocksalt", "S", "Se"), settings)
    assert verdict.rule == "electronegativity"
    assert "S2+ (χ=2.58)" in verdict.reason and "Se2- (χ=2.55)" in verdict.reason
    assert assess(candidate("rocksalt", "Mg", "O"), settings).kept


def test_intermetallic_prototype_keeps_metals_only() -> None:
    assert assess(candidate("heusler", "Cu", "Mn", "Al")).kept
    verdict = assess(candidate("heusler", "Cu", "Mn", "O"))
    assert verdict.rule == "metals_only" and "O" in verdict.reason


def test_a_relaxed_structure_is_not_matched_to_its_prototype() -> None:
    record = candidate("rocksalt", "Na", "Cl")
    distorted = record.structure.copy()
    distorted.perturb(0.05, min_distance=0.05)
    assert match_prototype(record) is not None
    assert match_prototype(StructureRecord("x", distorted, {}, "relaxed")) is None
    assert "no prototype" in assess(StructureRecord("x", distorted, {}, "relaxed")).reason


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="charge_balance"):
        PlausibilitySettings(rules=("oxidation",))
    with pytest.raises(ValidationError, match="low < high"):
        PlausibilitySettings(tolerance_factor=(1.1, 0.8))
    assert PlausibilitySettings().fingerprint() != PlausibilitySettings(min_state_share=0.02).fingerprint()


def test_filtered_source_keeps_row_count_and_marks_rejections() -> None:
    items = [candidate("rocksalt", "Na", "Cl"), candidate("fluorite", "Ca", "N"), RecordError("bad", "parse", "no")]
    source = FilteredSource(ListSource(items))
    out = list(source)
    assert [item.id for item in out] == [item.id for item in items]
    assert isinstance(out[0], StructureRecord)
    assert isinstance(out[1], RecordError) and out[1].stage == "filter" and out[1].reason.startswith("charge_balance:")
    assert out[2] is items[2]
    assert list(source.iter_range(1, 2))[0].stage == "filter"


def test_filter_records_writes_every_input_to_kept_or_rejected(tmp_path) -> None:
    items = [candidate("rocksalt", "Na", "Cl"), candidate("spinel", "Mg", "Al", "O"),
             candidate("perovskite", "S", "Cl", "F"),
             RecordError("broken-7", "parse", "invalid structure JSON")]
    counts = filter_records(items, tmp_path / "kept.parquet")
    assert (counts.inputs, counts.kept, dict(counts.rejected)) == (4, 2, {"charge_balance": 1, "parse": 1})
    kept = [record.id for record in TableSource(tmp_path / "kept.parquet")]
    assert kept == ["cand-rocksalt-NaCl", "cand-spinel-MgAl2O4"]
    rejected = pq.read_table(rejected_path(tmp_path / "kept.parquet")).to_pylist()
    assert [(row["id"], row["rule"]) for row in rejected] == [("cand-perovskite-SClF3", "charge_balance"),
                                                               ("broken-7", "parse")]
    assert rejected[0]["prototype"] == "perovskite" and "S2+" in rejected[0]["reason"]
    assert rejected[1]["reason"] == "invalid structure JSON"

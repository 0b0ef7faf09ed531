"""``hybridmat export``: copy a trained job's ensemble into a model directory with a model card.

The card is written from the job's own ``metrics.json`` (what data, which split, which command, test
metrics), so the shipped numbers are always the measured ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.config import JobConfig

MAX_BYTES = 10 * 1024 * 1024


def _card(job: JobConfig, metrics: dict[str, Any], sizes: dict[str, int], members: list[str], command: str) -> str:
    rows = "\n".join(
        f"| {row['target']} | {row['mae']:.4f} | {row['rmse']:.4f} | {row['r2']:.3f} | {row['n']} |"
        for row in metrics["test"]
    )
    return f"""# {job.name}

| | |
|---|---|
| model | `{job.model.name}` {json.dumps(dict(job.model.hyper))}, ensemble of {len(members)} \
(seeds {job.train.seed}..{job.train.seed + len(members) - 1}) |
| data | `{Path(job.data.source.split("?")[0]).name}` (Materials Project, PBE/PBE+U, legacy corrections) |
| split | `{job.data.split}`: train {sizes['train']:,} / val {sizes['val']:,} / test {sizes['test']:,} \
(selected on val, reported on test) |
| targets | {", ".join(job.data.targets)} (eV/atom for e_form, eV for band_gap) |
| features | {job.features.composition} composition, graph cutoff {job.features.cutoff} Å, \
{job.features.max_neighbors} neighbours |
| trained with | `{command}` |

## Test metrics (ensemble mean)

| target | MAE | RMSE | R² | n |
|---|---:|---:|---:|---:|
{rows}

## Use and limits
`hybridmat predict SOURCE --out PRED.parquet` uses this ensemble by default; `<target>_std` is the
spread of the {len(members)} members until `hybridmat calibrate DIR` calibrates it (section below). \
Labels are one old MP snapshot (see the dataset's
README): predictions inherit PBE's band-gap underestimate and MP's correction scheme of that time.
"""


def export_model(job: JobConfig, dest: Path, command: str) -> list[Path]:
    """Copy ``member-k/best.pt`` of the job's output to ``dest/member-k.pt`` and write the model card."""
    job.require("export", "data", "model")
    output = Path(job.output)
    metrics = json.loads((output / "metrics.json").read_text())
    checkpoints = sorted(output.glob("member-*/best.pt"))
    if not checkpoints:
        raise FileNotFoundError(f"no member-*/best.pt in {output}: train the job first")
    total = sum(c.stat().st_size for c in checkpoints)
    if total > MAX_BYTES:
        raise ValueError(f"the ensemble is {total / 1e6:.1f} MB; "
                         f"the shipped model must stay under {MAX_BYTES / 1e6:.0f} MB")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("member-*.pt"):
        old.unlink()
    copied = []
    for k, checkpoint in enumerate(checkpoints):
        target = dest / f"member-{k}.pt"
        shutil.copyfile(checkpoint, target)
        copied.append(target)
    card = _card(job, metrics, metrics["sizes"], [c.name for c in copied], command)
    atomic_write_bytes(dest / "MODEL_CARD.md", card.encode())
    for name in ("calibration.json", "domain.npz"):  # a calibrated job's output: same members, same calibration
        (dest / name).unlink(missing_ok=True)
        if (output / name).is_file():
            shutil.copyfile(output / name, dest / name)
    if (dest / "calibration.json").is_file():
        write_calibration_section(dest / "MODEL_CARD.md", json.loads((dest / "calibration.json").read_text()))
    atomic_write_bytes(dest / "metrics.json", json.dumps({"test": metrics["test"], "val": metrics["val"],
                                                          "sizes": metrics["sizes"], "command": command},
                                                         indent=2).encode())
    return copied


CALIBRATION_HEADING = "## Calibrated uncertainty and domain"


def write_calibration_section(card: Path, record: dict[str, Any]) -> None:
    """Replace (or append) the model card's calibration section with what ``calibration.json`` records."""
    domain = record["domain"]
    rows = "\n".join(
        f"| {target} | {v['rows']:,} | {v['raw_1std']:.3f} | {v['calibrated_68']:.3f} | {v['calibrated_90']:.3f} |"
        for target, v in record["validation"].items())
    section = f"""{CALIBRATION_HEADING}
Fitted with `{record['command']}` on `{record['calibration']['fitted_on']}` ({record['calibration']['method']}).
`<target>_std` is the calibrated standard deviation (±1 covers 68 %), `<target>_lo`/`<target>_hi` the 90 %
interval. Domain score: mean distance to the {domain['k']} nearest of {domain['reference_rows']:,} distinct training
compositions ({domain['features']}); `in_domain` when at most {domain['threshold']:.3f}, the
{domain['in_domain_quantile']:.0%} quantile of the validation rows. `hybridmat bench calibration` measures it on test.

| target (val) | rows | raw ±1 std covers | calibrated 68 % covers | calibrated 90 % covers |
|---|---:|---:|---:|---:|
{rows}
"""
    text = card.read_text()
    before, found, after = text.partition(CALIBRATION_HEADING)
    rest = after[after.find("\n## "):] if found and "\n## " in after else ""
    atomic_write_bytes(card, (before.rstrip("\n") + "\n\n" + section + rest).encode())

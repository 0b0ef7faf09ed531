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
| model | `{job.model.name}` {json.dumps(dict(job.model.hyper))}, ensemble of {len(members)} (seeds {job.train.seed}..{job.train.seed + len(members) - 1}) |
| data | `{Path(job.data.source.split("?")[0]).name}` (Materials Project, PBE/PBE+U, legacy corrections) |
| split | `{job.data.split}`: train {sizes['train']:,} / val {sizes['val']:,} / test {sizes['test']:,} (selected on val, reported on test) |
| targets | {", ".join(job.data.targets)} (eV/atom for e_form, eV for band_gap) |
| features | {job.features.composition} composition, graph cutoff {job.features.cutoff} Å, {job.features.max_neighbors} neighbours |
| trained with | `{command}` |

## Test metrics (ensemble mean)

| target | MAE | RMSE | R² | n |
|---|---:|---:|---:|---:|
{rows}

## Use and limits
`hybridmat predict SOURCE --out PRED.parquet` uses this ensemble by default; `<target>_std` is the
spread of the {len(members)} members (not calibrated). Labels are one old MP snapshot (see the dataset's
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
        raise ValueError(f"the ensemble is {total / 1e6:.1f} MB; the shipped model must stay under {MAX_BYTES / 1e6:.0f} MB")
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
    atomic_write_bytes(dest / "metrics.json", json.dumps({"test": metrics["test"], "val": metrics["val"],
                                                          "sizes": metrics["sizes"], "command": command}, indent=2).encode())
    return copied

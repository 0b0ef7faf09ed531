"""``hybridmat export``: the members of one or more trained jobs as one ensemble in a model directory, with a card.

Several jobs (e.g. early-fusion members and ALIGNN members, trained separately or concurrently) make one ensemble
when they share data, split, targets and featurizer settings. Export predicts validation and test with every member
and with the ensemble mean, so the card's numbers (per member and for the ensemble, with each job's training time
and machine) are measured on the exported members themselves, and says whether the ensemble beats each member.
An ensemble of different models gets per-target member weights fitted on the validation predictions
(:mod:`hybridmat.training.stacking`, written to ``ensemble.json``); seeds of one model are averaged equally.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.config import JobConfig, JobFileError
from hybridmat.data.validate import clip_to_target_ranges
from hybridmat.training.checkpoint import read_state
from hybridmat.training.ensemble import Ensemble
from hybridmat.training.metrics import regression_metrics
from hybridmat.training.stacking import MemberWeights, combine
from hybridmat.workflows.predict import WEIGHTS_FILE, ModelFiles

MAX_BYTES = 10 * 1024 * 1024
CURVES_FILE = "validation_curves.png"
#: What members of one ensemble must share: the same data, split and targets, seen through the same featurizer.
SHARED_SECTIONS = ("data", "features")


def _same_data(jobs: Sequence[JobConfig]) -> None:
    first = jobs[0]
    for job in jobs[1:]:
        for section in SHARED_SECTIONS:
            if getattr(job, section) != getattr(first, section):
                raise JobFileError(f"jobs {first.name!r} and {job.name!r} differ in `{section}`: members of one "
                                   "ensemble must share data, split, targets and featurizer settings")


def _rows(y: np.ndarray, prediction: np.ndarray, targets: Sequence[str]) -> list[dict[str, Any]]:
    metrics = regression_metrics(y, prediction, targets)
    return [{"target": t, **{k: metrics[t][k] for k in ("mae", "rmse", "r2")}, "n": int(metrics[t]["n"])}
            for t in targets]


def _ensemble_rows(y: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None,
                   targets: Sequence[str]) -> list[dict[str, Any]]:
    """The ensemble's metrics as the predictor makes its mean: combined, then within each target's physical range."""
    return _rows(y, clip_to_target_ranges(combine(predictions, weights)[0], targets), targets)


def _member_records(details: dict[str, dict[str, Any]], checkpoints: Sequence[tuple[JobConfig, int, Path]],
                    val: np.ndarray, test: np.ndarray, y_val: np.ndarray, y_test: np.ndarray,
                    targets: Sequence[str]) -> list[dict[str, Any]]:
    """One record per member: its job, model, seed, epochs, training seconds and val/test metrics (``details``:
    each job's training details by job name)."""
    records = []
    for k, (job, index, _) in enumerate(checkpoints):
        record = {key: _nth(details[job.name], key, index) for key in ("epochs_run", "best_epochs", "member_seconds",
                                                                       "curves")}
        records.append({"member": k, "job": job.name, "model": job.model.name, "hyper": dict(job.model.hyper),
                        "seed": job.train.seed + index, "epochs_run": record["epochs_run"],
                        "best_epoch": record["best_epochs"], "train_seconds": record["member_seconds"],
                        "curve": record["curves"] or [], "val": _rows(y_val, val[k], targets),
                        "test": _rows(y_test, test[k], targets)})
    return records


def _data_name(job: JobConfig) -> str:
    """``TABLE?split=NAME`` (or the seeded split) of a job, as calibration records what it was fitted on."""
    name = Path(job.data.source.split("?")[0]).name
    return f"{name}?split={job.data.split}" if job.data.split else f"{name} (seeded split {job.data.split_seed})"


def _nth(details: dict[str, Any], key: str, index: int) -> Any:
    """Member ``index``'s entry of a per-member list in a job's ``details`` (None when the job did not record it)."""
    values = details.get(key) or []
    return values[index] if index < len(values) else None


def write_validation_curves(checkpoints: Sequence[Path], labels: Sequence[str], targets: Sequence[str],
                            path: Path) -> None:
    """One panel per target: each member's validation MAE after every epoch (read from the history its
    checkpoint carries), the selected epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    figure, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.8), squeeze=False)
    for checkpoint, label in zip(checkpoints, labels):
        extra = read_state(checkpoint)["extra"]
        history = [m for m in extra.get("history", []) if "val_mae" in m]
        epochs = [m["epoch"] for m in history]
        for axis, target in zip(axes[0], targets):
            values = [m[f"val_mae_{target}"] for m in history]
            line, = axis.plot(epochs, values, label=label)
            if extra.get("best_epoch") in epochs:
                best = epochs.index(extra["best_epoch"])
                axis.plot(epochs[best], values[best], "o", color=line.get_color())
    for axis, target in zip(axes[0], targets):
        axis.set(xlabel="epoch", ylabel=f"validation MAE, {target}", yscale="log")
        axis.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
        axis.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
        axis.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=90)
    plt.close(figure)
    atomic_write_bytes(path, image.getvalue())  # like every other file of the model directory


def _mae_row(label: str, rows: dict[str, Any]) -> str:
    """A members-table row of an ensemble mean: its val and test MAE per target."""
    return (f"| {label} | | | | | " + " | ".join(f"{r['mae']:.4f}" for r in rows["val"]) + " | "
            + " | ".join(f"{r['mae']:.4f}" for r in rows["test"]) + " |")


def _card(jobs: Sequence[JobConfig], record: dict[str, Any], members: list[dict[str, Any]]) -> str:
    job = jobs[0]
    sizes, targets = record["sizes"], job.data.targets
    kinds = ", ".join(f"{sum(m['job'] == j.name for m in members)} × `{j.model.name}` "
                      f"{json.dumps(dict(j.model.hyper))}" for j in jobs)
    rows = "\n".join(f"| {r['target']} | {r['mae']:.4f} | {r['rmse']:.4f} | {r['r2']:.3f} | {r['n']} |"
                     for r in record["test"])
    member_rows = "\n".join(
        f"| {m['member']} | `{m['model']}` | {m['seed']} | {m['epochs_run']} / {m['best_epoch']} | "
        f"{m['train_seconds'] or 0:,.0f} | " + " | ".join(f"{r['mae']:.4f}" for r in m["val"]) + " | "
        + " | ".join(f"{r['mae']:.4f}" for r in m["test"]) + " |" for m in members)
    ensemble_row = _mae_row("ensemble" if record["weights"] is None else "ensemble (weighted)", record)
    if record["weights"] is not None:
        ensemble_row += "\n" + _mae_row("equal-weight mean", record["equal_weights"])
    target_columns = " | ".join(f"val {t}" for t in targets) + " | " + " | ".join(f"test {t}" for t in targets)
    beats = ", ".join(f"{t}: {'yes' if ok else 'NO'}" for t, ok in record["ensemble_beats_every_member"].items())
    combination = "The members are averaged equally."
    if record["weights"] is not None:
        combination = (f"The members are different models, combined with per-target weights (`{WEIGHTS_FILE}`; "
                       f"{record['weights']['method']}, fitted on `{record['weights']['fitted_on']}`): "
                       + "; ".join(f"{t} " + " / ".join(f"{w:.3f}" for w in ws)
                                   for t, ws in record["weights"]["weights"].items()) + " for members "
                       + " / ".join(str(m["member"]) for m in members) + ".")
    machine = record["machine"]
    split = f"`{job.data.split}`" if job.data.split else f"seeded random 80/10/10 (seed {job.data.split_seed})"
    return f"""# {" + ".join(j.name for j in jobs)}

| | |
|---|---|
| members | {kinds}; {len(members)} in all |
| data | `{Path(job.data.source.split("?")[0]).name}` (Materials Project, PBE/PBE+U, legacy corrections) |
| split | {split}: train {sizes['train']:,} / val {sizes['val']:,} / test {sizes['test']:,} \
(selected on val, reported on test) |
| targets | {", ".join(targets)} (eV/atom for e_form, eV for band_gap) |
| features | {job.features.composition} composition, graph cutoff {job.features.cutoff} Å, \
{job.features.max_neighbors} neighbours |
| trained with | {", ".join(f"`{c}`" for c in record["commands"])} |
| training time | {record["train_seconds"] / 3600:.2f} h of member training in all, on {machine} |

## Test metrics (ensemble mean)

| target | MAE | RMSE | R² | n |
|---|---:|---:|---:|---:|
{rows}

## Members (MAE; epochs run / best epoch)

| member | model | seed | epochs | train s | {target_columns} |
|---|---|---:|---:|---:|{"---:|" * (2 * len(targets))}
{member_rows}
{ensemble_row}

{combination} The ensemble mean beats every member on test: {beats}.

![validation MAE per epoch of every member; dots: the epoch each member keeps]({CURVES_FILE})

## Use and limits
`hybridmat predict SOURCE --out PRED.parquet` uses this ensemble by default; `<target>_std` is the
spread of the {len(members)} members, as combined above, until `hybridmat calibrate DIR` calibrates it \
(section below). Labels are one old MP snapshot (see the dataset's README): predictions inherit PBE's
band-gap underestimate and MP's correction scheme of that time.
"""


def export_model(jobs: JobConfig | Sequence[JobConfig], dest: Path) -> list[Path]:
    """Copy every job's ``member-k/best.pt`` to ``dest/member-<n>.pt``, measure members and ensemble on val and
    test, and write ``MODEL_CARD.md`` and ``metrics.json``. One job's calibration is copied with its members;
    several jobs' union needs ``hybridmat calibrate DEST``."""
    from hybridmat.workflows.train import job_split_data

    jobs = [jobs] if isinstance(jobs, JobConfig) else list(jobs)
    for job in jobs:
        job.require("export", "data", "model")
    _same_data(jobs)
    checkpoints = []
    for job in jobs:
        found = sorted(Path(job.output).glob("member-*/best.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
        if not found:
            raise FileNotFoundError(f"no member-*/best.pt in {job.output}: train job {job.name!r} first")
        checkpoints += [(job, index, path) for index, path in enumerate(found)]
    total = sum(path.stat().st_size for _, _, path in checkpoints)
    if total > MAX_BYTES:
        raise ValueError(f"the ensemble is {total / 1e6:.1f} MB; "
                         f"the shipped model must stay under {MAX_BYTES / 1e6:.0f} MB")
    ensemble = Ensemble.from_checkpoints([path for _, _, path in checkpoints])
    data = job_split_data(jobs[0], progress=False)
    targets = list(data.target_names)
    val, test = ensemble.member_predictions(data.val), ensemble.member_predictions(data.test)
    y_val, y_test = data.val.targets.numpy(), data.test.targets.numpy()
    job_metrics = [json.loads((Path(job.output) / "metrics.json").read_text()) for job in jobs]
    details = {job.name: metrics.get("details", {}) for job, metrics in zip(jobs, job_metrics)}
    members = _member_records(details, checkpoints, val, test, y_val, y_test, targets)
    weights = None
    if len({job.model.name for job in jobs}) > 1:
        weights = MemberWeights.fit(val, y_val, targets, fitted_on=f"{_data_name(jobs[0])}/val")
    matrix = None if weights is None else weights.matrix(targets, len(checkpoints))
    for k, member in enumerate(members):
        member["weight"] = {t: 1 / len(members) if weights is None else weights.weights[t][k] for t in targets}
    test_rows = _ensemble_rows(y_test, test, matrix, targets)
    record = {
        "test": test_rows, "val": _ensemble_rows(y_val, val, matrix, targets),
        "weights": None if weights is None else weights.to_dict(),
        "equal_weights": None if weights is None else {"test": _ensemble_rows(y_test, test, None, targets),
                                                       "val": _ensemble_rows(y_val, val, None, targets)},
        "sizes": {p: len(data.part(p)) for p in ("train", "val", "test")},
        "commands": [(m.get("command") or f"hybridmat train {j.name}")
                     + (f" (a warm restart of {Path(j.train.init_from).name})" if j.train.init_from else "")
                     for m, j in zip(job_metrics, jobs)],
        "machine": "; ".join(sorted({m.get("machine", "machine not recorded") for m in job_metrics})),
        "train_seconds": float(sum(m["train_seconds"] or 0 for m in members)),
        "ensemble_beats_every_member": {
            row["target"]: all(row["mae"] < m["test"][t]["mae"] for m in members) for t, row in enumerate(test_rows)},
        "members": members,
    }
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for k, (_, _, path) in enumerate(checkpoints):  # each member replaced atomically, then the surplus removed
        atomic_write_bytes(dest / f"member-{k}.pt", path.read_bytes())
        copied.append(dest / f"member-{k}.pt")
    for surplus in set(dest.glob("member-*.pt")) - set(copied):
        surplus.unlink()
    (dest / WEIGHTS_FILE).unlink(missing_ok=True)
    if weights is not None:
        checkpoints_id = ModelFiles(tuple(path.read_bytes() for path in copied)).checkpoints_id
        atomic_write_bytes(dest / WEIGHTS_FILE,
                           json.dumps({"checkpoints_id": checkpoints_id, **weights.to_dict()}, indent=2).encode())
    atomic_write_bytes(dest / "MODEL_CARD.md", _card(jobs, record, members).encode())
    write_validation_curves(copied, [f"{m['member']}: {m['model']} (seed {m['seed']})" for m in members], targets,
                            dest / CURVES_FILE)
    for name in ("calibration.json", "domain.npz"):  # one calibrated job's output: same members, same calibration
        (dest / name).unlink(missing_ok=True)
        if len(jobs) == 1 and (Path(jobs[0].output) / name).is_file():
            shutil.copyfile(Path(jobs[0].output) / name, dest / name)
    if (dest / "calibration.json").is_file():
        write_calibration_section(dest / "MODEL_CARD.md", json.loads((dest / "calibration.json").read_text()))
    atomic_write_bytes(dest / "metrics.json", json.dumps(record, indent=2).encode())
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

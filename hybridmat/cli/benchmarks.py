"""``hybridmat bench ...``: speed and accuracy tables, each measured in the run that prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybridmat.bench.calibration import bench_calibration_command
from hybridmat.bench.discovery import bench_screening_command
from hybridmat.bench.multitask import bench_multitask_command
from hybridmat.bench.relax import bench_relax_command
from hybridmat.cli.apps import bench_app
from hybridmat.console import console, invocation
from hybridmat.features.pipeline import DEFAULT_SHARD_SIZE


@bench_app.command("featurize")
def bench_featurize(
    n: Annotated[int, typer.Option("--n", help="Number of real MP structures to time.")] = 2000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
) -> None:
    """Featurization speed vs matminer and pymatgen reference builders, measured in this run."""
    from hybridmat.bench.featurize import run_featurize_benchmark

    run_featurize_benchmark(n=n, json_path=json_path, data_path=data, console=console, command=invocation())


@bench_app.command("distributed")
def bench_distributed(
    n: Annotated[int, typer.Option("--n", help="Number of real MP structures to featurize.")] = 24000,
    shard_size: Annotated[int, typer.Option(help="Rows per shard (one actor call).")] = DEFAULT_SHARD_SIZE,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
) -> None:
    """Featurization with 1 and 2 Ray workers vs the single-process path, measured in this run."""
    from hybridmat.bench.distributed import run_distributed_benchmark

    run_distributed_benchmark(n, shard_size, json_path, data, console, invocation())


@bench_app.command("screen")
def bench_screen(
    sizes: Annotated[str, typer.Option(help="Comma-separated numbers of generated candidates.")] = "10000,100000",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
) -> None:
    """End-to-end screening candidates/s and peak memory (PSS) at several sizes: does memory stay flat?"""
    from hybridmat.bench.screen_scaling import run_screen_benchmark

    run_screen_benchmark([int(n) for n in sizes.split(",")], console, invocation(), json_path)


@bench_app.command("models")
def bench_models(
    split: Annotated[str, typer.Option(help="cpu_small (2 CPU cores, <= 45 min) or full (GPU).")] = "cpu_small",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated subset of models (default: all).")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for figures and results.")] = Path("runs/bench_models"),
) -> None:
    """Every model on the same real split: test MAE, R², training time; do hybrids beat their parents?"""
    from hybridmat.bench.models import MODEL_ORDER, run_models_benchmark

    chosen = tuple(models.split(",")) if models else MODEL_ORDER
    run_models_benchmark(split, device, json_path, console, invocation(), chosen, data, out)


@bench_app.command("training")
def bench_training(
    store: Annotated[Path, typer.Option(help="Feature store of real structures.")] = Path("runs/features/mp_cgcnn36k"),
    n: Annotated[str, typer.Option("--n", help="Structures per pass; several sizes (2000,29392) also time "
                                                "the trainer's path on each.")] = "2000",
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 2,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """CPU training throughput: PyG DataLoader (first epoch / cached) vs hybridmat's array collation; per size."""
    from hybridmat.bench.training import run_training_benchmark

    try:
        sizes = [int(size) for size in n.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--n takes whole numbers separated by commas, got {n!r}") from None
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"--n sizes must be at least 1, got {n!r}")
    run_training_benchmark(store, sizes, threads, console, invocation(), json_path)


@bench_app.command("gpu")
def bench_gpu(
    store: Annotated[Path, typer.Option(help="Feature store of real structures.")] = Path("runs/features/mp_cgcnn36k"),
    n: Annotated[int, typer.Option("--n", help="Structures to train on.")] = 4000,
    epochs: Annotated[int, typer.Option(help="Epochs per measurement (the first is excluded).")] = 3,
    device: Annotated[str, typer.Option(help="cuda (default) or cpu.")] = "cuda",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """CGCNN, early fusion and ALIGNN train/inference structures/s on a GPU, fp32 vs AMP."""
    from hybridmat.bench.gpu import run_gpu_benchmark

    run_gpu_benchmark(store, n, epochs, device, console, invocation(), json_path)


@bench_app.command("alignn")
def bench_alignn(
    n: Annotated[int, typer.Option("--n", help="cpu_small training structures (seeded sample).")] = 1000,
    n_val: Annotated[int, typer.Option("--n-val", help="cpu_small validation structures.")] = 500,
    epochs: Annotated[int, typer.Option(help="Epochs per variant (training speed: those after the first).")] = 3,
    seed: Annotated[int, typer.Option(help="Sample, initialisation and shuffling seed.")] = 0,
    threads: Annotated[int, typer.Option(help="torch intra-op threads of every variant.")] = 2,
    profile: Annotated[bool, typer.Option("--profile", help="Also: where a training step's time goes.")] = False,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """ALIGNN training/inference speed vs the official alignn package (when installed), same size and batches."""
    from hybridmat.bench.alignn import run_alignn_benchmark
    from hybridmat.bench.data import default_mp_parquet

    run_alignn_benchmark(data or default_mp_parquet(), n, n_val, epochs, seed, threads, profile, console,
                         invocation(), json_path)


bench_app.command("screening")(bench_screening_command)
bench_app.command("multitask")(bench_multitask_command)
bench_app.command("calibration")(bench_calibration_command)
bench_app.command("relax")(bench_relax_command)

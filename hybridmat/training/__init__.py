"""Training for every torch model: one trainer, checkpoints, metrics and deep ensembles."""

from hybridmat.training.checkpoint import load_checkpoint, predict, save_checkpoint
from hybridmat.training.collate import GraphTable
from hybridmat.training.ensemble import Ensemble, Member, train_ensemble, train_member
from hybridmat.training.metrics import mae, r2, regression_metrics, rmse
from hybridmat.training.normalizer import TargetNormalizer
from hybridmat.training.trainer import TrainConfig, Trainer, TrainResult, seed_everything, train_model

__all__ = [
    "Ensemble",
    "GraphTable",
    "Member",
    "TargetNormalizer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_checkpoint",
    "mae",
    "predict",
    "r2",
    "regression_metrics",
    "rmse",
    "save_checkpoint",
    "seed_everything",
    "train_ensemble",
    "train_member",
    "train_model",
]

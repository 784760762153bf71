"""Fraud pipeline: PaySim CSV → causal features → LSTM+GAT → MLflow model `fraud-lstm-gat`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

import apps.fraud as fraud_app
from apps.fraud import synthetic
from apps.fraud.dataset import WindowBatchSampler
from apps.fraud.features import (
    FraudFeatureConfig,
    Standardizer,
    build_tables,
    time_order,
)
from apps.fraud.model import FraudInputSizes, FraudLSTMGAT, FraudModelConfig
from apps.fraud.reader import PAYSIM_COLUMNS, read_paysim
from apps.fraud.scorer import CONTEXT_ROWS_PARAM, FraudPyfuncModel, FraudScorer, make_batches, predict_rows
from apps.fraud.split import FraudDataConfig, temporal_split
from common import distributed
from common.bundled_model import BUNDLE_ARTIFACT
from common.errors import InputError
from common.losses import build_classification_loss, loss_on_probabilities
from common.metrics import best_f1_threshold, binary_metric_names, binary_metrics, roc_pr_curves
from common.plotting import learning_curves_figure, pr_figure, roc_figure
from common.trainer import TrainConfig, Trainer, seed_everything
from pipelines.domain import TrainedModel

RECALL_FPRS = (0.01,)
MLFLOW_ENTRY = str(Path(fraud_app.__file__).parent / "mlflow_entry.py")


@dataclass
class FraudConfig:
    """The fraud pipeline's settings; these defaults are `configs/fraud.yaml`'s (a test keeps them equal)."""

    data: FraudDataConfig = field(default_factory=FraudDataConfig)
    features: FraudFeatureConfig = field(default_factory=FraudFeatureConfig)
    model: FraudModelConfig = field(default_factory=FraudModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, batch_size=1024, monitor="val_pr_auc"))


def find_transactions_file(data: Path) -> Path:
    """`--data` may name the CSV/Parquet itself or a folder holding exactly one."""
    if data.is_file():
        return data
    found = sorted(p for p in data.iterdir() if p.suffix in (".csv", ".parquet") or p.name.endswith(".csv.gz"))
    if len(found) != 1:
        raise InputError(data, f"expected one PaySim .csv or .parquet file in the folder, found {len(found)}")
    return found[0]


def model_input_example(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The logged model's input example: five PaySim rows (no labels) and the `context_rows` param (default 0).

    The param gives the model's signature a params schema, so `predict(df, params={"context_rows": N})`
    (or `"params": {"context_rows": N}` in a REST request) marks the first N rows as history-only context.
    """
    example = raw.drop(columns=[c for c in ("isFraud", "isFlaggedFraud") if c in raw.columns]).head(5)
    return example[[c for c in PAYSIM_COLUMNS if c in example.columns]], {CONTEXT_ROWS_PARAM: 0}


class FraudPipeline:
    name = "fraud"
    model_name = "fraud-lstm-gat"
    key_metric = "test_auc"
    config_cls = FraudConfig
    # what validation reports (the names `train.monitor` may take) and which way each is better
    validation_metrics = {"train": {"val_loss": "min",
                                    **{f"val_{name}": "max" for name in binary_metric_names(RECALL_FPRS)}}}

    def synthesize(self, out: Path, scale: str, seed: int) -> Path:
        return synthetic.write_synthetic_paysim(out, scale, seed)

    def fit(self, cfg: FraudConfig, data: Path, workdir: Path, resume: bool,
            on_epoch_end: Callable[[int, dict[str, float]], None]) -> TrainedModel:
        seed_everything(cfg.train.seed)
        path = find_transactions_file(data)
        raw = read_paysim(path, require_labels=True)
        df = raw.iloc[time_order(raw)].reset_index(drop=True)
        labels = df["isFraud"].to_numpy(np.int64)
        try:
            train_rows, val_rows, test_rows = temporal_split(
                df["step"].to_numpy(), cfg.data.val_fraction, cfg.data.test_fraction)
        except InputError as exc:
            raise InputError(path, exc.problem) from None
        for split, rows in (("training", train_rows), ("validation", val_rows), ("test", test_rows)):
            if labels[rows].min() == labels[rows].max():
                raise InputError(path, f"the {split} split (by step) holds only one class; need fraud and "
                                       "non-fraud rows in every split")
        tables = build_tables(df, cfg.features)
        standardizer = Standardizer.fit(tables.row[train_rows])
        batches = make_batches(tables, df, standardizer, cfg.features, cfg.model, labels)
        network = FraudLSTMGAT(cfg.model, FraudInputSizes.from_features())
        criterion = build_classification_loss(cfg.train.loss, labels[train_rows], 2, cfg.train.focal_gamma)
        sampler = WindowBatchSampler(train_rows, tables.window, cfg.train.batch_size, shuffle=True,
                                     seed=cfg.train.seed, rank=distributed.rank(),
                                     world_size=distributed.world_size())
        train_loader = DataLoader(batches, sampler=sampler, batch_size=None, num_workers=cfg.train.num_workers)
        eval_batch = max(cfg.train.batch_size, 2048)

        def loss_fn(logits: torch.Tensor, batch: dict) -> torch.Tensor:
            return criterion.to(logits.device)(logits.float(), batch["label"])

        def validate(model: FraudLSTMGAT) -> dict[str, float]:
            probs = predict_rows(model, batches, val_rows, eval_batch)
            y = labels[val_rows]
            metrics = binary_metrics(y, probs, fprs=RECALL_FPRS)
            val_loss = loss_on_probabilities(criterion, probs, y)
            return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}}

        trainer = Trainer(network, cfg.train, loss_fn, validate, workdir, on_epoch_end)
        result = trainer.fit(train_loader, resume=resume)
        if not distributed.is_main_process():  # torchrun: rank 0 alone evaluates, saves and logs the model
            return None
        network = trainer.model.cpu()

        val_probs = predict_rows(network, batches, val_rows, eval_batch)
        threshold = best_f1_threshold(labels[val_rows], val_probs)
        test_probs = predict_rows(network, batches, test_rows, eval_batch, progress=True)
        y_test = labels[test_rows]
        test_metrics = binary_metrics(y_test, test_probs, threshold, fprs=RECALL_FPRS)
        test_metrics["threshold"] = threshold

        bundle = FraudScorer(network, cfg.features, standardizer, threshold).save(workdir / "bundle")
        return TrainedModel(
            test_metrics=test_metrics, python_model=MLFLOW_ENTRY, artifacts={BUNDLE_ARTIFACT: str(bundle)},
            input_example=model_input_example(raw),
            figures={"roc_test.png": roc_figure(y_test, test_probs), "pr_test.png": pr_figure(y_test, test_probs),
                     "learning_curves.png": learning_curves_figure(result.history, cfg.train.monitor)},
            history=result.history, curves=roc_pr_curves(y_test, test_probs),
            summary_params={"rows_train": len(train_rows), "rows_val": len(val_rows), "rows_test": len(test_rows),
                            "fraud_rate_train": float(labels[train_rows].mean()), "best_epoch": result.best_epoch + 1},
        )

    def score(self, python_model: FraudPyfuncModel, input_path: Path, output_path: Path, batch_size: int,
              context: Path | None = None, engine=None) -> str:
        """`context`: a PaySim file or a folder of them, earlier transactions that feed histories only."""
        return FraudPyfuncModel.expect(python_model).score_file(find_transactions_file(input_path), output_path,
                                                                batch_size, engine, context)


DOMAIN = FraudPipeline()

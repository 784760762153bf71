"""Batch scoring of PaySim transactions with a trained LSTM+GAT, and its MLflow pyfunc wrapper."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from apps.fraud.dataset import FraudBatches, WindowBatchSampler
from apps.fraud.features import (
    FraudFeatureConfig,
    MoneyGraph,
    Standardizer,
    TransactionTables,
    build_tables,
    time_order,
)
from apps.fraud.model import FraudInputSizes, FraudLSTMGAT, FraudModelConfig
from apps.fraud.reader import read_paysim, validate_paysim_frame
from common.errors import InputError
from common.io import atomic_path
from common.model_bundle import load_bundle, save_bundle

SCORE_COLUMN = "fraud_probability"


def make_batches(tables: TransactionTables, df_in_time_order: pd.DataFrame, standardizer: Standardizer,
                 feature_cfg: FraudFeatureConfig, model_cfg: FraudModelConfig,
                 labels: np.ndarray | None = None) -> FraudBatches:
    """The dataset the network reads, with only the branches the model uses."""
    graph = MoneyGraph(tables, df_in_time_order, feature_cfg.max_neighbors) if model_cfg.graph else None
    return FraudBatches(tables, standardizer, graph, labels, use_sequence=model_cfg.sequence)


@torch.no_grad()
def predict_rows(network: FraudLSTMGAT, batches: FraudBatches, rows: np.ndarray, batch_size: int,
                 progress: bool = False) -> np.ndarray:
    """Fraud probability for each of `rows` (indices into `batches`), in the order given."""
    network.eval()
    device = next(network.parameters()).device
    sampler = WindowBatchSampler(rows, batches.tables.window, batch_size, shuffle=False)
    loader = DataLoader(batches, sampler=sampler, batch_size=None)
    position = np.empty(len(batches), np.int64)
    position[rows] = np.arange(len(rows))
    out = np.empty(len(rows), np.float64)
    bar = tqdm(total=len(rows), desc="scoring", unit="rows", disable=None if progress else True)
    for index, batch in zip(sampler, loader, strict=True):
        batch = {k: v.to(device) for k, v in batch.items()}
        out[position[index]] = torch.softmax(network(batch).float(), 1)[:, 1].cpu().numpy()
        bar.update(len(index))
    bar.close()
    return out


class FraudScorer:
    """A trained fraud model with its frozen feature settings, standardiser and decision threshold."""

    def __init__(self, network: FraudLSTMGAT, feature_cfg: FraudFeatureConfig, standardizer: Standardizer,
                 threshold: float):
        self.network, self.feature_cfg = network.eval(), feature_cfg
        self.standardizer, self.threshold = standardizer, threshold

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        """Probabilities in `df`'s row order; each uses only rows at or before it in time."""
        order = time_order(df)
        ordered = df.iloc[order].reset_index(drop=True)
        tables = build_tables(ordered, self.feature_cfg)
        batches = make_batches(tables, ordered, self.standardizer, self.feature_cfg, self.network.cfg)
        probs = predict_rows(self.network, batches, np.arange(len(ordered)), batch_size, progress)
        out = np.empty(len(df), np.float64)
        out[order] = probs
        return out

    def save(self, folder: str | Path) -> Path:
        spec = {
            "kind": "fraud-lstm-gat", "features": asdict(self.feature_cfg), "model": asdict(self.network.cfg),
            "sizes": asdict(self.network.sizes), "threshold": float(self.threshold),
            "standardizer": {"mean": self.standardizer.mean.tolist(), "std": self.standardizer.std.tolist()},
        }
        return save_bundle(folder, self.network.state_dict(), spec)

    @classmethod
    def load(cls, folder: str | Path) -> FraudScorer:
        state, spec = load_bundle(folder)
        if spec.get("kind") != "fraud-lstm-gat":
            raise InputError(folder, f"holds a {spec.get('kind')!r} model, not a fraud model")
        network = FraudLSTMGAT(FraudModelConfig(**spec["model"]), FraudInputSizes(**spec["sizes"]))
        network.load_state_dict(state)
        std = Standardizer(np.asarray(spec["standardizer"]["mean"], np.float32),
                           np.asarray(spec["standardizer"]["std"], np.float32))
        return cls(network, FraudFeatureConfig(**spec["features"]), std, spec["threshold"])


class FraudPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow face of FraudScorer: a DataFrame of PaySim rows in, `fraud_probability` out."""

    def load_context(self, context) -> None:
        self.scorer = FraudScorer.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = validate_paysim_frame(pd.DataFrame(model_input), "model input", require_labels=False)
        return pd.DataFrame({SCORE_COLUMN: self.scorer.predict_proba(frame)})

    def score_file(self, input_path: Path, output_path: Path, batch_size: int) -> str:
        """Every input column plus `fraud_probability`, same row order, written atomically."""
        started = time.perf_counter()
        df = read_paysim(input_path, require_labels=False)
        if SCORE_COLUMN in df.columns:
            raise InputError(input_path, f"already has a {SCORE_COLUMN!r} column")
        df[SCORE_COLUMN] = self.scorer.predict_proba(df, batch_size=batch_size, progress=True)
        write_scores(df, output_path)
        seconds = time.perf_counter() - started
        flagged = int((df[SCORE_COLUMN] >= self.scorer.threshold).sum())
        return (f"scored {len(df):,} transactions in {seconds:.1f} s ({len(df) / max(seconds, 1e-9):,.0f} rows/s); "
                f"{flagged:,} at or above the validation threshold {self.scorer.threshold:.3f}; wrote {output_path}")


def write_scores(df: pd.DataFrame, output_path: Path) -> None:
    """CSV, or Parquet for a `.parquet` path; the file appears only once complete."""
    output_path = Path(output_path)
    with atomic_path(output_path) as tmp:
        if output_path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)

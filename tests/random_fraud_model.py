"""A small synthetic PaySim scale and a randomly initialised fraud scorer, for tests that compare scores:
equality needs no trained model, and both branches on let the past reach the LSTM and the GAT."""
import pandas as pd
import torch

from apps.fraud.features import FraudFeatureConfig, Standardizer, build_tables, time_order
from apps.fraud.model import FraudInputSizes, FraudLSTMGAT, FraudModelConfig
from apps.fraud.scorer import FraudScorer
from apps.fraud.synthetic import SyntheticScale

TINY = SyntheticScale(n_customers=600, n_merchants=200, n_agents=30, n_mules=12, n_steps=96, approx_rows=5_000)


def random_scorer(df: pd.DataFrame, model_cfg: FraudModelConfig | None = None) -> FraudScorer:
    torch.manual_seed(0)
    cfg = FraudFeatureConfig()
    # Two GAT layers by default (the shipped model has one): the farthest past a Spark part must carry.
    network = FraudLSTMGAT(model_cfg or FraudModelConfig(hidden=16, gat_heads=2, graph_layers=2),
                           FraudInputSizes.from_features())
    tables = build_tables(df.iloc[time_order(df)].reset_index(drop=True), cfg)
    return FraudScorer(network, cfg, Standardizer.fit(tables.row), threshold=0.5)

"""What every domain pipeline provides, so `suite` can synthesise, run and score any of them alike."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mlflow.pyfunc


@dataclass
class TrainedModel:
    """A domain's fit hands this back: the runner logs it, registers it and prints it."""

    test_metrics: dict[str, float]
    python_model: str  # models-from-code file that calls mlflow.models.set_model(...)
    artifacts: dict[str, str]
    input_example: Any
    figures: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    summary_params: dict[str, Any] = field(default_factory=dict)
    # Test curves as small tables (e.g. "roc_test": columns fpr, tpr), overlaid by `suite compare --plot`.
    curves: dict[str, Any] = field(default_factory=dict)


class Domain(Protocol):
    name: str
    model_name: str
    key_metric: str
    config_cls: type
    # config section of a TrainConfig -> {validation metric: "max" or "min"}: what its `monitor` may name
    validation_metrics: dict[str, dict[str, str]]

    def synthesize(self, out: Path, scale: str, seed: int) -> Path:
        """Write a synthetic dataset in the domain's real input format; return what `--data` takes."""

    def fit(self, cfg: Any, data: Path, workdir: Path, resume: bool,
            on_epoch_end: Callable[[int, dict[str, float]], None]) -> TrainedModel:
        """Train on `data`, evaluate on its held-out split, and return the model and test metrics."""

    def score(self, python_model: mlflow.pyfunc.PythonModel, input_path: Path, output_path: Path,
              batch_size: int, context: Path | None = None, engine=None) -> str:
        """Score `input_path` into `output_path` (atomically); return a one-line summary.

        `engine` (common.scoring_engines): None scores here; a SparkEngine spreads the parts over Spark.

        `context` (fraud only; other domains refuse it): earlier data that informs the scores, not written.
        """

"""Fraud at PaySim's own size: `suite synth fraud --scale large` (≈ 6.3 M rows, 743 steps), training and
scoring through the CLI, each step's wall time and peak resident memory measured by GNU time.

`python -m benchmarks.run_all --only fraud-large [--fraud-large-epochs N]` records it in RESULTS.md.
With `--fraud-large-epochs 0` the model scored is trained on the medium set instead (2 epochs), which
keeps the run short; the section says which was done.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from benchmarks.common import OUT, TRAIN_SHARE, markdown_table, measured_suite

MEDIUM_EPOCHS = 2  # of the medium-set model scored when the large set is not trained on


def run(train_epochs: int) -> str:
    data = OUT / "fraud_large"
    with tempfile.TemporaryDirectory() as work:
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{Path(work) / 'mlflow.db'}",
               "SUITE_CHECKPOINT_DIR": str(Path(work) / "ckpt")}
        steps = []
        seconds, rss, _ = measured_suite(["synth", "fraud", "--out", str(data), "--scale", "large", "--seed", "1"], env)
        path = data / "transactions.csv"
        with path.open("rb") as f:
            n_rows = sum(1 for _ in f) - 1
        steps.append({"step": "synth (write the CSV)", "wall s": seconds, "rows/s": n_rows / seconds,
                      "peak RSS MB": rss})
        on_large = train_epochs > 0
        if on_large:
            train_data, epochs, note = path, train_epochs, f"trained on the large set itself, {train_epochs} epochs"
        else:
            train_data, epochs = OUT / "fraud_medium" / "transactions.csv", MEDIUM_EPOCHS
            note = f"trained on the medium set ({epochs} epochs); training at this size was not run"
            if not train_data.exists():
                measured_suite(["synth", "fraud", "--out", str(train_data.parent), "--scale", "medium",
                                "--seed", "1"], env)
        seconds, rss, out = measured_suite(["run", "fraud", "--data", str(train_data), "--set",
                                            f"train.epochs={epochs}"], env)
        model = re.search(r"registered: (models:/\S+)", out).group(1)
        test_metrics = dict(re.findall(r"^test_(auc|recall_at_1pct_fpr|pr_auc): ([\d.]+)$", out, re.M))
        if on_large:
            steps.append({"step": f"train ({epochs} epochs, whole run)", "wall s": seconds,
                          "rows/s": TRAIN_SHARE * n_rows * epochs / seconds, "peak RSS MB": rss})
        for suffix in ("parquet", "csv"):
            target = Path(work) / f"scores.{suffix}"
            seconds, rss, _ = measured_suite(["score", "fraud", "--model", model, "--input", str(path),
                                              "--output", str(target)], env)
            steps.append({"step": f"score ({suffix} out, whole command)", "wall s": seconds,
                          "rows/s": n_rows / seconds, "peak RSS MB": rss})
    return "\n".join([
        f"### Fraud at PaySim's size (`--scale large`: {n_rows:,} rows, 743 steps; model {note})", "",
        markdown_table(steps), "",
        "- the model's test metrics (its run's last 15 % of steps): "
        + ", ".join(f"{k} {v}" for k, v in test_metrics.items()),
        "- each step is one `suite` process; wall time includes start-up; peak RSS is GNU time's maximum "
        "resident set size of that process. Training rows/s counts the training split (70 %) per epoch.",
    ])


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

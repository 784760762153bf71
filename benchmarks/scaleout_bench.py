"""Scale-out: training with 1 vs 2 torchrun processes, scoring with the local engine vs Spark `local[2]`.

Everything runs through the CLI, as users run it (subprocesses), so the numbers include start-up:
process launch, torchrun's rendezvous, the SparkSession. `python -m benchmarks.scaleout_bench`
prints the section; `python -m benchmarks.run_all --only scaleout` records it in RESULTS.md.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from benchmarks.common import OUT, markdown_table, measured_suite

TRAIN = {  # domain: (synthetic scale, epochs, training rows or patches per epoch are read from the run)
    "fraud": ("medium", 2),
    "medical": ("small", 4),
}
SCORE_SCALES = {"fraud": "medium", "medical": "small", "driving": "small"}


def suite(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and stdout of one `suite` command; a failure stops the benchmark with its stderr."""
    seconds, _, out = measured_suite(args, env)
    return seconds, out


def data_for(domain: str, scale: str, env: dict[str, str]) -> Path:
    folder = OUT / f"{domain}_{scale}"
    if not folder.exists():
        suite(["synth", domain, "--out", str(folder), "--scale", scale, "--seed", "1"], env)
    return folder / "transactions.csv" if domain == "fraud" else folder


def run() -> str:
    with tempfile.TemporaryDirectory() as work:
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{Path(work) / 'mlflow.db'}",
               "SUITE_CHECKPOINT_DIR": str(Path(work) / "ckpt"), "SUITE_SPARK_LOG": str(Path(work) / "spark.log")}
        train_rows, models = [], {}
        for domain, (scale, epochs) in TRAIN.items():
            data = data_for(domain, scale, env)
            for nproc in (1, 2):
                seconds, out = suite(["run", domain, "--data", str(data), "--nproc", str(nproc), "--experiment",
                                      f"{domain}-{nproc}", "--set", f"train.epochs={epochs}"], env)
                models[domain] = re.search(r"registered: (models:/\S+)", out).group(1)
                metric = "test_auc" if domain == "fraud" else "test_cpm"
                value = re.search(rf"{metric}: ([\d.]+)", out)
                train_rows.append({"domain": f"{domain} ({scale})", "processes": nproc, "epochs": epochs,
                                   "wall s (whole run)": seconds, "key test metric": metric,
                                   "value": float(value.group(1)) if value else None})
        driving = data_for("driving", SCORE_SCALES["driving"], env)
        _, out = suite(["run", "driving", "--data", str(driving), "--set", "train.epochs=2",
                        "--set", "camera_train.epochs=1"], env)
        models["driving"] = re.search(r"registered: (models:/\S+)", out).group(1)

        score_rows = []
        for domain, scale in SCORE_SCALES.items():
            source = data_for(domain, scale, env)
            for engine in ("local", "spark"):
                target = Path(work) / f"{domain}-{engine}" / ("out" if domain == "driving" else "out.csv")
                target.parent.mkdir()
                extra = ["--engine", "spark", "--spark-master", "local[2]", "--partitions", "4"] if engine == "spark" \
                    else []
                seconds, out = suite(["score", domain, "--model", models[domain], "--input", str(source),
                                      "--output", str(target), *extra], env)
                count = re.search(r"scored ([\d,]+) (transactions|candidates|frames)", out)
                n, unit = int(count.group(1).replace(",", "")), count.group(2)
                split = re.search(r"start-up ([\d.]+) s, scoring ([\d.]+) s", out)
                planning = re.search(r"the driver planned the parts in ([\d.]+) s", out)
                tasks = re.search(r"Spark: (\d+) tasks on (\d+) Python workers", out)
                score_rows.append({
                    "domain": domain, "engine": engine, "items": f"{n:,} {unit}", "wall s": seconds,
                    "items/s (wall)": n / seconds,
                    "driver planning s": float(planning.group(1)) if planning else None,
                    "Spark start-up s": float(split.group(1)) if split else None,
                    "Spark scoring s": float(split.group(2)) if split else None,
                    "tasks / workers": f"{tasks.group(1)} / {tasks.group(2)}" if tasks else "-",
                })
    return "\n".join([
        "### Scale-out (torchrun processes; Spark `local[2]` vs the local engine; all through the CLI)", "",
        "Training to the same epochs with 1 and 2 processes (`suite run D --nproc N`; wall time includes data "
        "loading, evaluation and MLflow logging):", "", markdown_table(train_rows), "",
        "Scoring (`suite score D --engine local|spark`; wall time includes the process, model load and, for "
        "Spark, the session start-up):", "", markdown_table(score_rows), "",
        "- On 2 cores two processes share the cores one process already used (intra-op threads drop from 2 "
        "to 1 per rank), so no speed-up is expected here; the point is that the same command runs on N "
        "GPUs or machines. Spark's start-up and per-task model load are paid once per job and per worker.",
    ])


if __name__ == "__main__":
    print(run())

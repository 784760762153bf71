"""Where batch scoring runs: in this process (`--engine local`) or on Apache Spark (`--engine spark`).

The shape every domain uses:
- the driver turns the input into a list of small, picklable *parts* (paths and ids, never the data);
- `score_parts` spreads them over Spark tasks; each executor Python worker loads the model once
  (`worker_model`, cached by URI) and calls the domain's `score_part(model, part)`, which reads its
  own files where they lie;
- results come back to the driver in part order, which writes the output exactly as the local engine.
`LocalEngine` runs the same `score_part` over the same parts in this process, so both engines give
the same output by construction.

A bad input met inside a task (`InputError`) travels back as a value, so the user sees the same one
line as with the local engine, never a Java stack trace.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from common.errors import InputError
from common.partial_results import PartialResults

DEFAULT_MASTER = "local[*]"


@dataclass(frozen=True)
class SparkSettings:
    """Where and how widely to score (the CLI's `--spark-master` and `--partitions`)."""

    master: str | None = None  # None: spark-submit's master if set, else local[*]
    partitions: int | None = None  # None: Spark's default parallelism, at most one per part

    def validate(self) -> None:
        if self.partitions is not None and self.partitions < 1:
            raise InputError(None, f"--partitions must be at least 1, got {self.partitions}")
        if self.master is not None and not self.master.startswith(("local", "spark://", "yarn", "k8s://")):
            raise InputError(None, f"--spark-master must be local[N], spark://HOST:PORT, yarn or k8s://..., "
                                   f"got {self.master!r}")


@dataclass
class SparkReport:
    """What the job did, for the summary line and the tests."""

    tasks: int = 0  # Spark tasks that scored at least one part
    workers: int = 0  # distinct executor Python worker processes
    model_loads: int = 0  # times a worker loaded the model (one per worker when workers are reused)
    startup_s: float = 0.0
    scoring_s: float = 0.0

    def describe(self) -> str:
        return (f"Spark: {self.tasks} tasks on {self.workers} Python workers, model loaded {self.model_loads}x; "
                f"start-up {self.startup_s:.1f} s, scoring {self.scoring_s:.1f} s; Spark's log: {log_file()}")


@dataclass(frozen=True)
class _PartFailure:
    path: str | None
    problem: str


_WORKER_MODELS: dict[str, Any] = {}


def worker_model(model_uri: str) -> tuple[Any, bool]:
    """The model of this Python worker (loaded on first use, then reused by every later task here)."""
    if model_uri not in _WORKER_MODELS:
        import mlflow.pyfunc

        _WORKER_MODELS[model_uri] = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        return _WORKER_MODELS[model_uri], True
    return _WORKER_MODELS[model_uri], False


_KEPT = "kept"  # what a task returns for a part whose result it wrote into the partial folder


def _score_partition(model_uri: str, score_part: Callable[[Any, Any], Any], partial: PartialResults | None,
                     indexed_parts: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """One Spark task: its parts scored in order, then one record of who did the work (index -1).

    With `partial`, the task writes each result into the partial folder itself (atomically; a retried
    task writes the same bytes again) and returns only a marker, so a killed job keeps every finished part.
    """
    import torch
    from pyspark import TaskContext

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))  # Spark sets it to task.cpus
    parts = list(indexed_parts)
    if not parts:
        return
    model, loaded = worker_model(model_uri)
    for index, part in parts:
        try:
            result = score_part(model, part)
            if partial is not None:
                partial.save(index, result)
                result = _KEPT
            yield index, result
        except InputError as exc:
            yield index, _PartFailure(exc.path, exc.problem)
    context = TaskContext.get()
    yield -1, {"pid": os.getpid(), "loaded": loaded,
               "partition": context.partitionId() if context else 0}


def spark_session(master: str | None, app_name: str):
    """A SparkSession that logs quietly (the user reads one summary line), or the one spark-submit made."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors on this machine: this very venv
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")  # STACK.md: works
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None or not under_spark_submit():
        builder = builder.master(master or DEFAULT_MASTER)
    builder = (builder.config("spark.ui.showConsoleProgress", "false")
               .config("spark.python.worker.reuse", "true")
               .config("spark.executorEnv.PYTHONWARNINGS", "ignore")
               .config("spark.task.maxFailures", "4"))
    with _jvm_output_to(log_file()):  # the JVM and its Python workers keep this stderr for their lifetime
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def log_file() -> Path:
    """Where Spark's own output goes (`SUITE_SPARK_LOG`, else a file in the temp folder): the user reads
    the suite's lines on the terminal, and this file when Spark itself misbehaves."""
    return Path(os.environ.get("SUITE_SPARK_LOG") or Path(tempfile.gettempdir()) / f"suite-spark-{os.getpid()}.log")


@contextlib.contextmanager
def _jvm_output_to(path: Path) -> Iterator[None]:
    """File descriptor 2 points at `path` while the JVM starts (it inherits it), then back at ours."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def under_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway: then its master and conf rule."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT"))


def is_local_master(master: str | None) -> bool:
    return not under_spark_submit() and (master is None or master.startswith("local"))


def score_parts(parts: Sequence[Any], score_part: Callable[[Any, Any], Any], model_uri: str,
                settings: SparkSettings, app_name: str, partial: PartialResults | None = None
                ) -> tuple[list[Any], SparkReport]:
    """`score_part(model, part)` for every part on Spark; results in part order, and what ran where.

    `score_part` must be a module-level function (it is pickled to the executors). A part whose
    scoring raised `InputError` is raised here, on the driver, as that same error. With `partial`,
    parts already done are loaded instead of scored, and each result is kept as soon as it arrives.
    """
    settings.validate()
    report = SparkReport()
    results: list[Any] = [None] * len(parts)
    todo = []
    for index, part in enumerate(parts):
        if partial is not None and partial.done(index):
            results[index] = partial.load(index)
        else:
            todo.append((index, part))
    if not todo:
        return results, report
    started = time.perf_counter()
    session = spark_session(settings.master, app_name)
    report.startup_s = time.perf_counter() - started
    workers = set()
    try:
        context = session.sparkContext
        slices = min(len(todo), settings.partitions or context.defaultParallelism)
        rdd = context.parallelize(todo, slices)
        started = time.perf_counter()
        collected = rdd.mapPartitions(lambda it: _score_partition(model_uri, score_part, partial, it)).collect()
        for index, value in collected:
            if index < 0:
                report.tasks += 1
                report.model_loads += int(value["loaded"])
                workers.add(value["pid"])
                continue
            if isinstance(value, _PartFailure):
                raise InputError(value.path, value.problem)
            results[index] = partial.load(index) if isinstance(value, str) and value == _KEPT else value
        report.scoring_s = time.perf_counter() - started
    finally:
        if not under_spark_submit():
            session.stop()
    report.workers = len(workers)
    return results, report


class LocalEngine:
    """Parts scored one after another in this process, with the model already loaded here."""

    def __init__(self, model: Any, partial: PartialResults | None = None):
        self.model, self.partial = model, partial

    def map(self, parts: Sequence[Any], score_part: Callable[[Any, Any], Any], desc: str) -> list[Any]:
        results = []
        for index, part in enumerate(tqdm(parts, desc=desc, disable=None)):
            if self.partial is not None and self.partial.done(index):
                results.append(self.partial.load(index))
                continue
            results.append(score_part(self.model, part))
            if self.partial is not None:
                self.partial.save(index, results[-1])
        return results

    def wanted_parts(self) -> int | None:
        """How many parts the user asked to spread a job over (None: the domain's natural parts)."""
        return None

    def describe(self) -> str:
        return ""


class SparkEngine:
    """Parts spread over Spark tasks; each executor Python worker loads the model from `model_uri` once."""

    def __init__(self, model_uri: str, settings: SparkSettings, app_name: str = "suite-score",
                 partial: PartialResults | None = None):
        settings.validate()
        self.model_uri, self.settings, self.app_name, self.partial = model_uri, settings, app_name, partial
        self.report = SparkReport()

    def map(self, parts: Sequence[Any], score_part: Callable[[Any, Any], Any], desc: str) -> list[Any]:
        results, self.report = score_parts(parts, score_part, self.model_uri, self.settings, self.app_name,
                                           self.partial)
        return results

    def wanted_parts(self) -> int | None:
        return self.settings.partitions

    def describe(self) -> str:
        return f"; {self.report.describe()}"

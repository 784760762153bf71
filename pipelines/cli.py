"""`suite`: synthesise data, run a pipeline, score a batch, compare runs, open the MLflow UI."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import typer  # noqa: E402

from common.errors import InputError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Domain Suite: medical, driving and fraud pipelines on one core, tracked in MLflow.")

DomainArg = Annotated[str, typer.Argument(help="medical, driving or fraud")]


def _redact(text: str) -> str:
    from common.redaction import redact

    return redact(text)


def _clear_errors(command):
    """Bad input → one line on stderr and exit 2; anything else → one line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {_redact(str(exc))}", err=True)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # the last line of defence: no traceback unless asked for
            if os.environ.get("SUITE_DEBUG"):
                traceback.print_exc()
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            typer.echo(f"error: {exc.__class__.__name__}: {_redact(first_line)} "
                       "(set SUITE_DEBUG=1 for the traceback)", err=True)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@_clear_errors
def synth(
    domain: DomainArg,
    out: Annotated[Path, typer.Option(help="folder to write the dataset into")],
    scale: Annotated[str, typer.Option(help="small, medium, large or full (the real dataset's size, where the "
                                            "domain defines it: fraud)")] = "small",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write a synthetic dataset in the domain's real input format."""
    from pipelines.registry import get_domain

    if scale not in ("small", "medium", "large", "full"):
        raise InputError(None, f"--scale must be small, medium, large or full, got {scale!r}")
    path = get_domain(domain).synthesize(out, scale, seed)
    typer.echo(f"wrote synthetic {domain} data ({scale}, seed {seed}): {path}")


@app.command()
@_clear_errors
def run(
    domain: DomainArg,
    data: Annotated[Path | None, typer.Option(help="dataset in the domain's format; default: synthetic")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config; default pipelines/configs/DOMAIN.yaml")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config value: key.sub=value")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment; default: the domain")] = None,
    resume: Annotated[bool, typer.Option(help="continue the experiment's newest unfinished run")] = False,
    resume_run: Annotated[str | None, typer.Option(help="continue this run id (its checkpoints must exist)")] = None,
    nproc: Annotated[int, typer.Option(help="training processes on this machine (torchrun; one per GPU)")] = 1,
    nnodes: Annotated[int, typer.Option(help="machines taking part (each runs this command)")] = 1,
    node_rank: Annotated[int, typer.Option(help="this machine's number, 0 .. nnodes-1 (0 logs to MLflow)")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="HOST:PORT of machine 0, where the processes "
                                                            "meet (needed with --nnodes > 1)")] = None,
    strict: Annotated[bool, typer.Option(help="refuse (exit 2) input that training otherwise skips with a warning: "
                                              "a damaged scan or frame among many, duplicate PaySim rows")] = False,
) -> None:
    """Train, evaluate on a held-out split, log to MLflow and register the model."""
    from common import distributed
    from common.errors import strict_inputs
    from pipelines.registry import get_domain
    from pipelines.runner import check_launch, run_pipeline

    if nproc != 1 or nnodes != 1 or rdzv_endpoint or node_rank:
        # The launcher: re-run this command (minus these flags) as nproc ranks under torchrun.
        check_launch(domain, data, config, set_ or [], nproc, nnodes, node_rank, rdzv_endpoint)
        args = ["pipelines", "run", domain]
        for flag, value in (("--data", data and data.absolute()), ("--config", config and config.absolute()),
                            ("--experiment", experiment), ("--resume-run", resume_run)):
            if value is not None:
                args += [flag, str(value)]
        for override in set_ or []:
            args += ["--set", override]
        if resume:
            args.append("--resume")
        if strict:
            args.append("--strict")
        raise typer.Exit(distributed.launch(args, nproc, nnodes, node_rank, rdzv_endpoint))

    def train_and_report() -> None:
        with strict_inputs(strict):
            outcome = run_pipeline(get_domain(domain), data, config, set_ or [], experiment, resume, resume_run)
        if outcome is None:  # a torchrun rank other than 0
            return
        typer.echo(f"run_id: {outcome.run_id}")
        for key, value in outcome.test_metrics.items():
            typer.echo(f"{key}: {value:.4f}")
        if outcome.model_version:
            crown = " (new champion)" if outcome.champion else ""
            typer.echo(f"registered: models:/{get_domain(domain).model_name}/{outcome.model_version}{crown}")
            typer.echo(f"champion: {outcome.champion_reason}")

    if distributed.is_distributed():  # one rank of a torchrun group: one status, one line, a clean exit
        distributed.run_as_rank(train_and_report, _redact)
    try:
        train_and_report()
    finally:
        distributed.shutdown_distributed()


@app.command()
@_clear_errors
def score(
    domain: DomainArg,
    model: Annotated[str, typer.Option(help="models:/NAME@champion, models:/NAME/N, runs:/ID/model or a folder")],
    input: Annotated[Path, typer.Option("--input", help="data to score, in the domain's input format")],
    output: Annotated[Path, typer.Option(help="where to write the scores (atomically)")],
    batch_size: Annotated[int, typer.Option(help="rows or patches per forward pass")] = 4096,
    context: Annotated[Path | None, typer.Option(help="fraud only: earlier transactions (a file or a folder "
                                                      "of files) feeding histories and graph, not written")] = None,
    engine: Annotated[str, typer.Option(help="local (this process) or spark (tasks on a Spark cluster)")] = "local",
    spark_master: Annotated[str | None, typer.Option(help="with --engine spark: local[N] or spark://HOST:PORT; "
                                                          "default local[*] (or spark-submit's)")] = None,
    partitions: Annotated[int | None, typer.Option(help="with --engine spark: how many parts to spread "
                                                        "(default: Spark's parallelism)")] = None,
    strict: Annotated[bool, typer.Option(help="refuse (exit 2) input that is otherwise skipped or kept with a "
                                              "warning: duplicate PaySim rows, unreadable .mhd entries")] = False,
) -> None:
    """Batch-score new data with a logged model."""
    from common.errors import strict_inputs
    from common.scoring_engines import LocalEngine, SparkEngine, SparkSettings, is_local_master

    # Flags first: a mistyped command is refused in well under a second, before torch and MLflow load.
    if engine not in ("local", "spark"):
        raise InputError(None, f"--engine must be local or spark, got {engine!r}")
    if engine == "local" and (spark_master is not None or partitions is not None):
        raise InputError(None, "--spark-master and --partitions need --engine spark")
    settings = SparkSettings(spark_master, partitions)
    settings.validate()
    if batch_size < 1:
        raise InputError(None, "--batch-size must be at least 1")

    from common import tracking
    from common.data_identity import data_fingerprint
    from common.partial_results import PartialResults
    from pipelines.registry import get_domain
    from pipelines.runner import load_python_model

    pipeline = get_domain(domain)
    if context is not None and pipeline.name != "fraud":
        raise InputError(None, f"--context is for fraud only (earlier transactions); {pipeline.name} takes none")
    if not input.exists():
        raise InputError(input, "input not found")
    if context is not None and not context.exists():
        raise InputError(context, "context not found")
    fetched: list[Path] = []
    python_model = load_python_model(model, fetched)
    # Finished parts survive a kill in <output>.partial/; the same command picks them up again.
    partial = PartialResults(output, {
        "domain": pipeline.name, "model": tracking.redact(model), "model_files": data_fingerprint(fetched[0]),
        "input": input.resolve(), "input_fingerprint": data_fingerprint(input),
        "context": context.resolve() if context else None,
        "context_fingerprint": data_fingerprint(context) if context else None,
        "batch_size": batch_size, "engine": engine, "partitions": partitions, "parts": python_model.part_layout()})
    partial.open()
    if engine == "spark":  # executors on this machine load the fetched copy; a cluster's fetch the URI themselves
        runner = SparkEngine(str(fetched[0]) if is_local_master(spark_master) else model, settings,
                             app_name=f"suite-score-{pipeline.name}", partial=partial)
    else:
        runner = LocalEngine(python_model, partial)
    try:
        with strict_inputs(strict):
            summary = pipeline.score(python_model, input, output, batch_size, context=context, engine=runner)
    except BaseException:
        partial.abandon()  # kept only when it holds finished parts worth resuming from
        raise
    partial.finish()
    typer.echo(summary)


evaluate_app = typer.Typer(no_args_is_help=True, help="Reference metrics (KITTI devkit, LUNA16) of files on disk.")
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("driving")
@_clear_errors
def evaluate_driving(
    labels: Annotated[Path, typer.Option(help="folder of KITTI label_2 files (the frames evaluated)")],
    results: Annotated[Path, typer.Option(help="folder of KITTI result files; a missing file = no detections")],
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the metrics here as JSON")] = None,
) -> None:
    """KITTI AP_2D/BEV/3D (easy, moderate, hard; IoU 0.7 and 0.5) and AOS, as the devkit's Python port."""
    from pipelines.evaluate import evaluate_driving as run

    typer.echo(run(labels, results, json_file))


@evaluate_app.command("medical")
@_clear_errors
def evaluate_medical(
    annotations: Annotated[Path, typer.Option(help="annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm)")],
    submission: Annotated[Path, typer.Option(help="submission CSV (seriesuid,coordX,coordY,coordZ,probability)")],
    excluded: Annotated[Path | None, typer.Option(help="annotations_excluded.csv: findings to ignore")] = None,
    series: Annotated[Path | None, typer.Option(help="seriesuids evaluated, one per line; default: "
                                                      "those in the submission")] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the CPM's 95 % interval")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap random seed")] = 0,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the metrics here as JSON")] = None,
) -> None:
    """LUNA16 FROC: sensitivity at 1/8 … 8 FPs per scan, CPM and its bootstrap interval, as the official script."""
    from pipelines.evaluate import evaluate_medical as run

    typer.echo(run(annotations, submission, excluded, series, bootstrap, seed, json_file))


@app.command()
@_clear_errors
def compare(
    domain: Annotated[str | None, typer.Argument(help="only this domain's runs")] = None,
    experiment: Annotated[list[str] | None, typer.Option(help="only these experiments (repeatable); "
                                                               "default: every experiment of the domain")] = None,
    metric: Annotated[str | None, typer.Option(help="sort by this metric; default the domain's key")] = None,
    top: Annotated[int, typer.Option(help="runs shown per domain")] = 10,
    plot: Annotated[Path | None, typer.Option(help="also save the metric and overlaid test curves here (PNG)")] = None,
    format: Annotated[str, typer.Option("--format", help="table, markdown, csv or json")] = "table",
    param: Annotated[list[str] | None, typer.Option(help="always show this param (repeatable)")] = None,
) -> None:
    """Runs side by side, best first, with the params that differ among them and the champion marked."""
    from pipelines.compare import compare_runs

    typer.echo(compare_runs(domain, experiment or [], metric, top, plot, format, param or []))


@app.command()
@_clear_errors
def models(
    domain: Annotated[str | None, typer.Argument(help="only this domain's model")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Registered model versions with their aliases, key metric, run and data fingerprint."""
    from pipelines.compare import list_models

    typer.echo(list_models(domain, format))


@app.command()
@_clear_errors
def ui(port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000) -> None:
    """The MLflow UI over the configured tracking store, on 127.0.0.1."""
    from common import tracking

    uri = tracking.configure_tracking()
    typer.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port}")
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])


def main() -> None:
    app()

"""train → evaluate → log → register, the same for every domain."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc

import mlflow
from common import distributed, tracking
from common.config import flatten_config, load_config
from common.data_identity import data_fingerprint
from common.errors import ConfigError, InputError
from common.io import atomic_dir, atomic_path
from common.trainer import resolve_monitor
from pipelines.domain import Domain

CONFIG_DIR = Path(__file__).parent / "configs"
READY_MARKER = ".complete"
MANIFEST_FILE = "run.json"  # in a run's checkpoint folder: its config and data fingerprint
FINISHED_MARKER = "FINISHED"  # a finished run's kept checkpoints (train.keep_checkpoints) are not resumed


@dataclass
class RunOutcome:
    run_id: str
    test_metrics: dict[str, float]
    model_version: str | None
    champion: bool
    champion_reason: str = ""


def default_data(domain: Domain, seed: int = 0) -> Path:
    """The default synthetic set, made once and cached under `data/<domain>/`."""
    folder = tracking.repo_root() / "data" / domain.name
    marker = folder / READY_MARKER
    if not marker.is_file():
        print(f"making the default synthetic {domain.name} data in {folder} (once)")
        with atomic_dir(folder) as tmp:
            entry = domain.synthesize(tmp, "small", seed)
            # The marker records what `--data` takes, relative to the folder (a file or the folder).
            (tmp / READY_MARKER).write_text(str(Path(entry).relative_to(tmp)) + "\n")
    return folder / marker.read_text().strip()


def checkpoint_root(experiment: str) -> Path:
    """Where the experiment's runs keep their checkpoints, one folder per run; SUITE_CHECKPOINT_DIR moves it."""
    root = os.environ.get("SUITE_CHECKPOINT_DIR") or tracking.repo_root() / "checkpoints"
    return Path(root) / experiment


# Config keys a resume may change: more epochs extend the run (the trainer re-plans its schedule).
RESUMABLE_CHANGES = ("train.epochs",)


def write_manifest(workdir: Path, config: dict[str, str], fingerprint: str, data: Path) -> None:
    """What the run was started with, beside its checkpoints, so a resume can refuse to mix."""
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(workdir / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps({"config": config, "data_fingerprint": fingerprint, "data": str(data)}, indent=1))


def find_resumable(root: Path, run_id: str | None) -> str | None:
    """The given run, or the experiment's newest unfinished run (by its latest checkpoint write)."""
    if run_id is not None:
        if not (root / run_id / MANIFEST_FILE).is_file():
            raise InputError(root / run_id, f"no checkpoint of run {run_id} in experiment {root.name!r} "
                                            "(finished runs keep none unless train.keep_checkpoints=true)")
        return run_id
    unfinished = [d for d in root.glob("*/") if (d / MANIFEST_FILE).is_file() and not (d / FINISHED_MARKER).exists()]
    if not unfinished:
        return None
    newest = max(unfinished, key=lambda d: max(f.stat().st_mtime for f in d.rglob("*") if f.is_file()))
    return newest.name


def check_resume_matches(workdir: Path, config: dict[str, str], fingerprint: str, data: Path) -> None:
    """Refuse a resume whose config or data differ from what the run started with (one line naming them)."""
    started = json.loads((workdir / MANIFEST_FILE).read_text())
    if started["data_fingerprint"] != fingerprint:
        raise InputError(data, f"is not the data run {workdir.name} was started on (fingerprint {fingerprint} vs "
                               f"{started['data_fingerprint']} of {started['data']}); resume with that --data")
    keys = sorted(set(config) | set(started["config"]))
    differing = [k for k in keys if config.get(k) != started["config"].get(k) and k not in RESUMABLE_CHANGES]
    if differing:
        shown = ", ".join(f"{k} ({started['config'].get(k)} → {config.get(k)})" for k in differing[:5])
        raise InputError(None, f"--resume: the config differs from run {workdir.name}'s in {shown}; resume with "
                               f"the same --config/--set values (only {', '.join(RESUMABLE_CHANGES)} may change)")


def split_description(domain: Domain, cfg) -> str:
    """How the held-out split is chosen: the domain's rule plus every `data.*` value that steers it."""
    from pipelines.registry import SPLIT_RULES

    rule = SPLIT_RULES.get(domain.name, "domain-defined")
    settings = ",".join(f"{k.removeprefix('data.')}={v}" for k, v in sorted(flatten_config(cfg).items())
                        if k.startswith("data."))
    return f"{rule} ({settings})" if settings else rule


def check_launch(domain: str, data: Path | None, config: Path | None, overrides: list[str], nproc: int,
                 nnodes: int, node_rank: int, rdzv_endpoint: str | None) -> None:
    """Before torchrun starts any process: the flags, the domain, its config and the data path (one line, exit 2)."""
    from pipelines.registry import get_domain

    if distributed.is_distributed():
        raise InputError(None, "--nproc/--nnodes: this command already runs under torchrun "
                               f"(WORLD_SIZE={os.environ.get('WORLD_SIZE')}); drop those flags")
    if nproc < 1 or nnodes < 1:
        raise InputError(None, f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise InputError(None, f"--node-rank must lie in 0 .. {nnodes - 1} (--nnodes {nnodes}), got {node_rank}")
    if nnodes > 1 and not rdzv_endpoint:
        raise InputError(None, "--nnodes > 1 needs --rdzv-endpoint HOST:PORT (machine 0's address and a free port)")
    if rdzv_endpoint is not None:
        host, _, port = rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(None, f"--rdzv-endpoint must be HOST:PORT, got {rdzv_endpoint!r}")
    pipeline = get_domain(domain)
    load_domain_config(pipeline, config, overrides)
    if data is not None and not Path(data).exists():
        raise InputError(data, "data path not found")


def load_domain_config(domain: Domain, config: Path | None, overrides: list[str]) -> Any:
    """The domain's config (its YAML, or `config`, plus `--set`), with every stage's `monitor` checked
    against the metrics that stage validates on and its mode taken from the metric: before any epoch."""
    path = Path(config) if config else CONFIG_DIR / f"{domain.name}.yaml"
    cfg = load_config(domain.config_cls, path, overrides)
    for section, directions in domain.validation_metrics.items():
        try:
            resolve_monitor(getattr(cfg, section), directions, section)
        except ValueError as exc:
            keys = (section, f"{section}.monitor", f"{section}.monitor_mode")
            sets = [item for item in overrides if item.split("=", 1)[0].strip() in keys]
            raise ConfigError(f"--set {sets[-1]}" if sets else path, str(exc)) from None
    return cfg


def run_pipeline(domain: Domain, data: Path | None, config: Path | None, overrides: list[str],
                 experiment: str | None, resume: bool, resume_run: str | None = None) -> RunOutcome | None:
    """Train and evaluate `domain`, log everything to MLflow, register the model, maybe crown it.

    Under torchrun every rank trains; rank 0 alone logs and registers, and only it gets an outcome.
    Checkpoints live in `checkpoints/<experiment>/<run_id>/`, so runs of one experiment never touch
    each other's; `resume` continues the newest unfinished one, `resume_run` a given one.
    """
    cfg = load_domain_config(domain, config, overrides)
    distributed.init_distributed()  # no-op unless started by torchrun
    main = distributed.is_main_process()
    experiment = experiment or domain.name
    root = checkpoint_root(experiment)
    flat_config = {k: str(v) for k, v in flatten_config(cfg).items()}
    with contextlib.ExitStack() as stack:
        def open_run() -> tuple[str, bool, str, dict[str, str]]:
            """Rank 0 alone talks to MLflow; under torchrun a failure here reaches every rank (no hang)."""
            # before any data is made or any epoch runs: a job that cannot log should stop now
            tracking.check_tracking_server(tracking.configure_tracking())
            path = default_data(domain) if data is None else Path(data)
            if not path.exists():
                raise InputError(path, "data path not found")
            fingerprint = data_fingerprint(path)
            resume_id = find_resumable(root, resume_run) if resume or resume_run else None
            if resume_id is not None:
                check_resume_matches(root / resume_id, flat_config, fingerprint, path)
                print(f"resuming run {resume_id} of experiment {experiment!r}")
            elif resume:
                print(f"nothing to resume for experiment {experiment!r}; starting a new run")
            experiment_id = tracking.ensure_experiment(experiment)
            mlflow.MlflowClient().set_experiment_tag(experiment_id, tracking.TAG_DOMAIN, domain.name)
            identity = {tracking.TAG_DOMAIN: domain.name, tracking.TAG_DATA_FINGERPRINT: fingerprint,
                        tracking.TAG_SPLIT: split_description(domain, cfg),
                        tracking.TAG_GIT_COMMIT: tracking.git_commit()}
            run = stack.enter_context(mlflow.start_run(run_id=resume_id,
                                                       experiment_id=None if resume_id else experiment_id))
            if resume_id is None:
                write_manifest(root / run.info.run_id, flat_config, fingerprint, path)
                tracking.log_params({**flat_config, "data.path": str(path)})
                mlflow.set_tags(identity)
                if distributed.world_size() > 1:
                    mlflow.set_tag("suite.world_size", str(distributed.world_size()))
            return run.info.run_id, resume_id is not None, str(path), identity

        # The run id names the checkpoint folder on every rank; rank 0's data path is every rank's.
        run_id, resumed, data_path, identity = distributed.main_only(open_run)
        data = Path(data_path)
        if not data.exists():
            raise InputError(data, f"data path not found on the machine of rank {distributed.rank()} (every "
                                   "machine needs the data at the same path)")
        workdir = root / run_id
        log_epoch = (lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch)) if main else None
        trained = domain.fit(cfg, data, workdir, resumed, log_epoch or (lambda epoch, metrics: None))
        if not main or trained is None:  # other torchrun ranks trained in step with rank 0, which alone logs
            return None
        test_metrics = {f"test_{k}": v for k, v in trained.test_metrics.items()}
        tracking.log_metrics(test_metrics)
        if trained.summary_params:
            mlflow.set_tags({f"summary.{k}": str(v) for k, v in trained.summary_params.items()})
        for filename, figure in trained.figures.items():
            tracking.log_figure(figure, filename)
        tracking.log_curves(trained.curves)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=trained.python_model, artifacts=trained.artifacts,
            input_example=trained.input_example, registered_model_name=domain.model_name,
            pip_requirements=["torch==2.13.0", "domain-suite"],
        )
        version = info.registered_model_version
        decision = tracking.ChampionDecision(False, "not registered")
        if version is not None:
            tracking.tag_model_version(domain.model_name, version, {tracking.TAG_RUN_ID: run_id, **identity})
            decision = tracking.promote_champion(domain.model_name, version, domain.key_metric)
            mlflow.set_tag("suite.champion_decision", decision.reason)
    if cfg.train.keep_checkpoints:
        (workdir / FINISHED_MARKER).write_text("finished\n")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return RunOutcome(run_id, test_metrics, None if version is None else str(version), decision.crowned,
                      decision.reason)


def load_python_model(uri: str, folder: list[Path] | None = None) -> mlflow.pyfunc.PythonModel:
    """Load a logged model by URI (models:/NAME@alias, models:/NAME/N, runs:/ID/model or a folder).

    Only what is about the URI becomes an InputError (exit 2): a URI that resolves to nothing (no such
    model, version, alias, run or folder), artifacts that cannot be fetched, a folder that is not an
    MLflow pyfunc model. Anything raised while the model itself loads (its `load_context`) propagates
    unchanged: an InputError of its own stays one, a bug shows as a bug (exit 1, traceback with
    SUITE_DEBUG=1). With SUITE_DEBUG=1 the MLflow error behind a bad-URI line is printed too.
    `folder`, when given, receives the local folder the model was fetched to (Spark executors on this
    machine load it from there instead of fetching it again).
    """
    import sys
    import traceback

    from mlflow.exceptions import MlflowException

    tracking.check_tracking_server(tracking.configure_tracking())
    if not uri.startswith(("models:/", "runs:/", "file:", "/", ".")) and not Path(uri).exists():
        raise InputError(uri, "model URI not understood (use models:/NAME@champion, models:/NAME/VERSION, "
                              "runs:/ID/model or a local model folder)")

    def refuse(exc: BaseException, what: str) -> InputError:
        if os.environ.get("SUITE_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return InputError(tracking.redact(uri), f"{what} ({tracking.redact(reason)[:200]})")

    try:  # resolve the URI and fetch the model's files: no model code runs here
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except (MlflowException, OSError, ValueError) as exc:  # OSError covers requests' connection errors
        raise refuse(exc, "cannot load model") from None
    if not (local / "MLmodel").is_file():
        raise InputError(tracking.redact(uri), "cannot load model (no MLmodel file: not an MLflow model folder)")
    if folder is not None:
        folder.append(local)
    try:
        loaded = mlflow.pyfunc.load_model(str(local))
    except MlflowException as exc:  # a malformed MLmodel, no python_function flavour
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, MlflowException):
            raise cause from None  # MLflow wraps what the model's own code raised on import: not about the URI
        raise refuse(exc, "cannot load model") from None
    return loaded.unwrap_python_model()

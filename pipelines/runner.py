"""train → evaluate → log → register, the same for every domain."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc

import mlflow
from common import distributed, tracking
from common.config import flatten_config, load_config
from common.data_identity import data_fingerprint
from common.errors import InputError
from common.io import atomic_dir
from pipelines.domain import Domain

CONFIG_DIR = Path(__file__).parent / "configs"
READY_MARKER = ".complete"


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


def checkpoint_dir(experiment: str) -> Path:
    """Per-experiment checkpoints, so `--resume` finds the interrupted run; SUITE_CHECKPOINT_DIR moves them."""
    root = os.environ.get("SUITE_CHECKPOINT_DIR") or tracking.repo_root() / "checkpoints"
    return Path(root) / experiment


def split_description(domain: Domain, cfg) -> str:
    """How the held-out split is chosen: the domain's rule plus every `data.*` value that steers it."""
    from pipelines.registry import SPLIT_RULES

    settings = ",".join(f"{k.removeprefix('data.')}={v}" for k, v in sorted(flatten_config(cfg).items())
                        if k.startswith("data."))
    return f"{SPLIT_RULES.get(domain.name, 'domain-defined')} ({settings})" if settings else SPLIT_RULES[domain.name]


def run_pipeline(domain: Domain, data: Path | None, config: Path | None, overrides: list[str],
                 experiment: str | None, resume: bool) -> RunOutcome | None:
    """Train and evaluate `domain`, log everything to MLflow, register the model, maybe crown it.

    Under torchrun every rank trains; rank 0 alone logs and registers, and only it gets an outcome.
    """
    cfg = load_config(domain.config_cls, config or CONFIG_DIR / f"{domain.name}.yaml", overrides)
    distributed.init_distributed()  # no-op unless started by torchrun
    main = distributed.is_main_process()
    if main:  # before any data is made or any epoch runs: a job that cannot log should stop now
        tracking.check_tracking_server(tracking.configure_tracking())
    if data is None:
        if main:
            default_data(domain)
        distributed.barrier()
        data = default_data(domain)
    elif not Path(data).exists():
        raise InputError(data, "data path not found")
    experiment = experiment or domain.name
    workdir = checkpoint_dir(experiment)
    run_id_file = workdir / "run_id.txt"
    resume_id = run_id_file.read_text().strip() if resume and run_id_file.is_file() else None
    distributed.barrier()
    if not main:  # other torchrun ranks train in step with rank 0, which alone logs and registers
        distributed.barrier()
        domain.fit(cfg, Path(data), workdir, resume_id is not None, lambda epoch, metrics: None)
        return None
    experiment_id = tracking.ensure_experiment(experiment)
    mlflow.MlflowClient().set_experiment_tag(experiment_id, tracking.TAG_DOMAIN, domain.name)
    identity = {tracking.TAG_DOMAIN: domain.name, tracking.TAG_DATA_FINGERPRINT: data_fingerprint(data),
                tracking.TAG_SPLIT: split_description(domain, cfg), tracking.TAG_GIT_COMMIT: tracking.git_commit()}
    if resume and resume_id is None:
        print(f"nothing to resume for experiment {experiment!r}; starting a new run")
    if resume_id is None:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()

    with mlflow.start_run(run_id=resume_id, experiment_id=None if resume_id else experiment_id) as run:
        run_id_file.write_text(run.info.run_id)
        if resume_id is None:
            tracking.log_params({**flatten_config(cfg), "data.path": str(data)})
            mlflow.set_tags(identity)
        trained = domain.fit(cfg, Path(data), workdir, resume_id is not None,
                             lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch))
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
            tracking.tag_model_version(domain.model_name, version, {tracking.TAG_RUN_ID: run.info.run_id, **identity})
            decision = tracking.promote_champion(domain.model_name, version, domain.key_metric)
            mlflow.set_tag("suite.champion_decision", decision.reason)
    run_id_file.unlink(missing_ok=True)
    return RunOutcome(run.info.run_id, test_metrics, None if version is None else str(version), decision.crowned,
                      decision.reason)


def load_python_model(uri: str) -> mlflow.pyfunc.PythonModel:
    """Load a logged model by URI (models:/NAME@alias, models:/NAME/N, runs:/ID/model or a folder)."""
    tracking.check_tracking_server(tracking.configure_tracking())
    if not uri.startswith(("models:/", "runs:/", "file:", "/", ".")) and not Path(uri).exists():
        raise InputError(uri, "model URI not understood (use models:/NAME@champion, models:/NAME/VERSION, "
                              "runs:/ID/model or a local model folder)")
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # MLflow raises many kinds for a bad URI; the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(tracking.redact(uri), f"cannot load model ({tracking.redact(reason)[:200]})") from None
    return loaded.unwrap_python_model()

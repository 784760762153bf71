"""train → evaluate → log → register, the same for every domain."""
from __future__ import annotations

import contextlib
import json
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
from common.io import atomic_dir, atomic_path
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


def run_pipeline(domain: Domain, data: Path | None, config: Path | None, overrides: list[str],
                 experiment: str | None, resume: bool, resume_run: str | None = None) -> RunOutcome | None:
    """Train and evaluate `domain`, log everything to MLflow, register the model, maybe crown it.

    Under torchrun every rank trains; rank 0 alone logs and registers, and only it gets an outcome.
    Checkpoints live in `checkpoints/<experiment>/<run_id>/`, so runs of one experiment never touch
    each other's; `resume` continues the newest unfinished one, `resume_run` a given one.
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
    data = Path(data)
    experiment = experiment or domain.name
    root = checkpoint_root(experiment)
    flat_config = {k: str(v) for k, v in flatten_config(cfg).items()}
    with contextlib.ExitStack() as stack:
        run = None
        if main:
            fingerprint = data_fingerprint(data)
            resume_id = find_resumable(root, resume_run) if resume or resume_run else None
            if resume_id is not None:
                check_resume_matches(root / resume_id, flat_config, fingerprint, data)
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
                write_manifest(root / run.info.run_id, flat_config, fingerprint, data)
                tracking.log_params({**flat_config, "data.path": str(data)})
                mlflow.set_tags(identity)
        run_id, resumed = distributed.broadcast_object((run.info.run_id, resume_id is not None) if main else None)
        workdir = root / run_id
        log_epoch = (lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch)) if main else None
        trained = domain.fit(cfg, data, workdir, resumed, log_epoch or (lambda epoch, metrics: None))
        if not main:  # other torchrun ranks trained in step with rank 0, which alone logs and registers
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

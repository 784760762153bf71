"""Real servers for the team-tracking tests: a throw-away PostgreSQL cluster and `mlflow server` processes."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

VENV_BIN = str(Path(sys.executable).parent)  # `mlflow models serve` starts uvicorn by name: it must be on PATH
SERVER_START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server subprocess: this venv first on PATH, no telemetry, no inherited store.

    MLflow's `set_tracking_uri`/`set_registry_uri` in this test process export their URIs to the
    environment; a child must not pick up another test's store or credentials from there.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))}
    return {**inherited, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "MLFLOW_DISABLE_TELEMETRY": "true",
            **extra}


def postgres_binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@contextmanager
def postgres_cluster():
    """A fresh PostgreSQL cluster on 127.0.0.1 (trust auth, user postgres); yields its SQLAlchemy URL base.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` system user.
    """
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL is not installed: run `make services` (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="suite-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
                    f"-h 127.0.0.1 -p {port} -k {root}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{base_url}/{name}"


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.exceptions.RequestException:
            time.sleep(0.5)
    raise RuntimeError(f"server not up after {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@contextmanager
def background_server(args: list[str], health_url: str, log: Path, env: dict[str, str]):
    """Start a server subprocess, wait for `health_url` to answer, stop it (and its workers) afterwards."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_until_up(health_url, process, log)
        yield process
    finally:
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        except ProcessLookupError:  # already gone
            pass


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path, app_name: str | None = None,
                  env: dict[str, str] | None = None):
    """`mlflow server` on 127.0.0.1 with proxied artifacts; yields its URL."""
    port = free_port()
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", backend_uri, "--serve-artifacts", "--artifacts-destination", str(artifacts)]
    if app_name:
        args += ["--app-name", app_name]
    url = f"http://127.0.0.1:{port}"
    with background_server(args, f"{url}/health", log, server_env(**(env or {}))):
        yield url

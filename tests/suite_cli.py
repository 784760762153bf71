"""Run `suite` as users do (a subprocess): exit codes, stdout and stderr exactly as they see them."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def value(self, key: str) -> str:
        """The value printed on a `key: value` line."""
        for line in self.stdout.splitlines():
            if line.startswith(f"{key}: "):
                return line.split(": ", 1)[1].strip()
        raise AssertionError(f"no '{key}:' line in output:\n{self.stdout}\n{self.stderr}")


def suite(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> Result:
    proc = subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Started:
    """A `suite` command running while the test goes on (output to files, so no pipe fills and blocks it)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen([sys.executable, "-m", "pipelines", *args], stdout=self._out,
                                      stderr=self._err, text=True, env={**os.environ, **(env or {})})

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc_info) -> None:
        """Leaving the block early (a failed assertion) ends the job, so it does not run on into later tests."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._err.close()

    def result(self, timeout: int = 900) -> Result:
        """Wait for it to end: its exit code, stdout and stderr."""
        code = self._proc.wait(timeout)
        self._out.seek(0)
        self._err.seek(0)
        return Result(code, self._out.read(), self._err.read())


def assert_clear_error(result: Result, *fragments: str) -> None:
    """Exit 2 and one line on stderr that names what is wrong; never a traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])

"""Run `suite` as users do (a subprocess): exit codes, stdout and stderr exactly as they see them."""
from __future__ import annotations

import os
import subprocess
import sys
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


def assert_clear_error(result: Result, *fragments: str) -> None:
    """Exit 2 and one line on stderr that names what is wrong; never a traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])

"""Errors that reach the user as one clear line instead of a traceback."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input (file, column, value or option): the CLI prints one line and exits 2."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(InputError):
    """A config key or value that cannot be used; raised before any work starts."""

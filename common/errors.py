"""Errors that reach the user as one clear line instead of a traceback."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path


class InputError(Exception):
    """Bad user input (file, column, value or option): the CLI prints one line and exits 2."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(InputError):
    """A config key or value that cannot be used; raised before any work starts."""


class InputWarning(UserWarning):
    """Input a command works around (skips, or keeps as it is) and names in a warning; `--strict` refuses it."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def warn_input(path: str | Path | None, problem: str, stacklevel: int = 2) -> None:
    """Warn about input that is skipped or kept as it is, naming the file (`stacklevel` as `warnings.warn`'s)."""
    warnings.warn(InputWarning(path, problem), stacklevel=stacklevel + 1)


@contextlib.contextmanager
def strict_inputs(strict: bool = True) -> Iterator[None]:
    """With `strict`, the first `InputWarning` inside is raised as an `InputError` (the CLI: exit 2, one line)."""
    if not strict:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        try:
            yield
        except InputWarning as exc:
            raise InputError(exc.path, f"{exc.problem} (refused under --strict)") from None

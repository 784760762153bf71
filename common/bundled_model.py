"""The MLflow pyfunc face every domain's model shares: a scorer saved as a bundle, loaded once, scoring files.

A domain supplies its scorer class (with `save(folder)` / `load(folder)` over `common.model_bundle`),
`predict` for MLflow's in-memory API and `score_file` for `suite score`; loading, the bundle
artifact's name and the model-type check are written here once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import mlflow.pyfunc

from common.errors import InputError

BUNDLE_ARTIFACT = "bundle"  # the MLflow artifact key under which every domain logs its bundle folder


class BundledModel(mlflow.pyfunc.PythonModel):
    """A logged model: `self.scorer` is the domain's scorer, loaded from the `bundle` artifact."""

    scorer_class: ClassVar[type]  # with a classmethod load(folder), refusing a bundle of another kind
    domain: ClassVar[str]

    def load_context(self, context: Any) -> None:
        self.scorer = self.scorer_class.load(context.artifacts[BUNDLE_ARTIFACT])

    @classmethod
    def from_scorer(cls, scorer: Any) -> BundledModel:
        """The pyfunc face of a scorer already in memory (tests, benchmarks), as if loaded by MLflow."""
        model = cls()
        model.scorer = scorer
        return model

    @classmethod
    def expect(cls, model: Any) -> BundledModel:
        """`model` if it is one of this domain's, else a clear error (someone passed another domain's URI)."""
        if not isinstance(model, cls):
            raise InputError(None, f"the model is a {type(model).__name__}, not a {cls.domain} model")
        return model

    def part_layout(self) -> str:
        """How `score_file` cuts a job into parts: kept in the partial-results manifest, so that parts cut
        another way (another version of this code) are never mixed with these."""
        return ""

    def score_file(self, input_path: Path, output_path: Path, batch_size: int, engine: Any = None,
                   context_path: Path | None = None) -> str:
        """Score `input_path` into `output_path` (atomically) and return the one-line summary."""
        raise NotImplementedError


def scorer_of(model: Any) -> Any:
    """The scorer behind a pyfunc model, or `model` itself when it already is one (what engine parts get)."""
    return model.scorer if isinstance(model, BundledModel) else model

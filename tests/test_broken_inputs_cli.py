"""A few corpus cases through `suite score` as users run it, and `load_python_model`'s error handling:
bad input is exit 2 and one line (no traceback, no output file); a bug in a model is a bug (exit 1)."""
from __future__ import annotations

from pathlib import Path

import pytest
from broken_inputs import UIDS, mhd_of, write_luna16
from suite_cli import assert_clear_error, suite

from common.errors import InputError

BUGGY_ENTRY = '''
import mlflow


class Buggy(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        settings = {}
        self.threshold = settings["threshold"]  # a bug: KeyError


mlflow.models.set_model(Buggy())
'''


def _save(folder: Path, entry: str, artifacts: dict[str, str] | None = None) -> Path:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(folder), python_model=entry, artifacts=artifacts,
                             pip_requirements=["domain-suite"])
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An untrained medical model (enough to reach the reader) and a model whose load_context has a bug."""
    import apps.medical
    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer

    root = tmp_path_factory.mktemp("models")
    cfg = MedicalModelConfig()
    bundle = MedicalScorer(build_medical_model(cfg), cfg, PatchConfig(), 0.5).save(root / "bundle")
    medical = _save(root / "medical", str(Path(apps.medical.__file__).parent / "mlflow_entry.py"),
                    {"bundle": str(bundle)})
    (root / "buggy_entry.py").write_text(BUGGY_ENTRY)
    buggy = _save(root / "buggy", str(root / "buggy_entry.py"))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    return {"medical": medical, "buggy": buggy, "env": env}


@pytest.mark.parametrize("how, fragments", [
    ("ElementDataFile escapes", [".mhd", "must name a file beside the header"]),
    ("seriesuid is a path", ["candidates.csv", "line 2", "is not a series id"]),
])
def test_hostile_luna16_input_is_one_line_and_no_output(models, tmp_path, how, fragments):
    folder = write_luna16(tmp_path / "luna")
    if how == "ElementDataFile escapes":
        mhd = mhd_of(folder)
        mhd.write_text(mhd.read_text().replace(f"ElementDataFile = {UIDS[0]}.raw", "ElementDataFile = /etc/passwd"))
    else:
        (folder / "candidates.csv").write_text(f"seriesuid,coordX,coordY,coordZ\n../../{UIDS[0]},1,1,1\n")
    out = tmp_path / "submission.csv"
    result = suite("score", "medical", "--model", str(models["medical"]), "--input", str(folder),
                   "--output", str(out), env=models["env"])
    assert_clear_error(result, *fragments)
    assert not out.exists()


def test_a_bad_model_uri_is_exit_2_and_suite_debug_shows_why(models, tmp_path):
    folder = write_luna16(tmp_path / "luna")
    out = tmp_path / "submission.csv"
    args = ["score", "medical", "--model", str(tmp_path / "no-such-model"), "--input", str(folder),
            "--output", str(out)]
    assert_clear_error(suite(*args, env=models["env"]), "no-such-model", "cannot load model")
    debug = suite(*args, env={**models["env"], "SUITE_DEBUG": "1"})
    assert debug.code == 2 and "Traceback" in debug.stderr and "cannot load model" in debug.stderr.splitlines()[-1]
    assert not out.exists()


def test_a_bug_in_a_model_is_not_called_bad_input(models, tmp_path):
    folder = write_luna16(tmp_path / "luna")
    args = ["score", "medical", "--model", str(models["buggy"]), "--input", str(folder),
            "--output", str(tmp_path / "out.csv")]
    plain = suite(*args, env=models["env"])
    assert plain.code == 1 and "KeyError" in plain.stderr and "Traceback" not in plain.stderr, plain.stderr
    debug = suite(*args, env={**models["env"], "SUITE_DEBUG": "1"})
    assert debug.code == 1 and "Traceback" in debug.stderr and "load_context" in debug.stderr, debug.stderr


def test_load_python_model_in_process(models, tracking_store, tmp_path):
    from pipelines.runner import load_python_model

    with pytest.raises(KeyError, match="threshold"):
        load_python_model(str(models["buggy"]))
    with pytest.raises(InputError, match="cannot load model"):
        load_python_model(str(tmp_path / "absent"))
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(InputError, match="no MLmodel file"):
        load_python_model(str(tmp_path / "not-a-model"))
    with pytest.raises(InputError, match="cannot load model"):
        load_python_model("models:/no-such-model/1")
    assert load_python_model(str(models["medical"])).scorer is not None


def test_strict_refuses_what_scoring_would_skip_with_a_warning(models, tmp_path):
    folder = write_luna16(tmp_path / "luna")
    (folder / "subset0" / "1.2.3.gone.mhd").symlink_to(tmp_path / "nowhere.mhd")  # a dangling entry among scans
    args = ["score", "medical", "--model", str(models["medical"]), "--input", str(folder)]
    lenient = suite(*args, "--output", str(tmp_path / "lenient.csv"), env=models["env"])
    assert lenient.code == 0 and "1.2.3.gone.mhd" in lenient.stderr, lenient.stderr
    strict = suite(*args, "--output", str(tmp_path / "strict.csv"), "--strict", env=models["env"])
    assert_clear_error(strict, str(folder), "1.2.3.gone.mhd", "not a readable file", "--strict")
    assert not (tmp_path / "strict.csv").exists()

"""The default synthetic data is made once, atomically, and reused."""
from pathlib import Path

from common import tracking
from pipelines import runner


class CountingDomain:
    name = "toy"

    def __init__(self):
        self.calls = 0

    def synthesize(self, out: Path, scale: str, seed: int) -> Path:
        self.calls += 1
        (out / "transactions.csv").write_text("step\n1\n")
        return out / "transactions.csv"


def test_default_data_is_made_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "repo_root", lambda: tmp_path)
    domain = CountingDomain()
    first = runner.default_data(domain)
    second = runner.default_data(domain)
    assert first == second == tmp_path / "data" / "toy" / "transactions.csv"
    assert first.read_text() == "step\n1\n" and domain.calls == 1

"""`make bench`: run every benchmark on medium synthetic data and write benchmarks/RESULTS.md."""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from benchmarks import driving_bench, fraud_bench, fraud_large, medical_bench, scaleout_bench
from benchmarks.common import machine
from common.io import atomic_path

RESULTS = Path(__file__).parent / "RESULTS.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--only", choices=["fraud", "medical", "driving", "scaleout", "fraud-large"],
                        help="one section; fraud-large (PaySim's size) runs only when asked for")
    parser.add_argument("--fraud-epochs", type=int, default=None, help="default: the fraud config's own (8)")
    parser.add_argument("--medical-epochs", type=int, default=15)
    parser.add_argument("--driving-epochs", type=int, default=10)
    parser.add_argument("--driving-camera-epochs", type=int, default=8)
    parser.add_argument("--fraud-large-epochs", type=int, default=2, help="0: score a model trained on medium")
    args = parser.parse_args()
    sections = []
    if args.only in (None, "fraud"):
        sections.append(fraud_bench.run(args.scale, args.fraud_epochs))
        print(sections[-1], flush=True)
    if args.only in (None, "medical"):
        sections.append(medical_bench.run(args.scale, args.medical_epochs))
        print(sections[-1], flush=True)
    if args.only in (None, "driving"):
        sections.append(driving_bench.run(args.scale, args.driving_epochs, args.driving_camera_epochs))
        print(sections[-1], flush=True)
    if args.only in (None, "scaleout"):
        sections.append(scaleout_bench.run())
        print(sections[-1], flush=True)
    if args.only == "fraud-large":
        sections.append(fraud_large.run(args.fraud_large_epochs))
        print(sections[-1], flush=True)
    command = "make bench" if args.only is None else f"python -m benchmarks.run_all --only {args.only}"
    if args.only == "fraud-large":
        command += f" --fraud-large-epochs {args.fraud_large_epochs}"
    header = (f"## {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC — `{command}` (scale {args.scale})\n\n"
              f"Machine: {machine()}\n")
    previous = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nNewest first.\n"
    intro, marker, older = previous.partition("\n## ")  # new sections go above the older ones
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(f"{intro.rstrip()}\n\n{header}\n" + "\n\n".join(sections) + "\n" + marker + older)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

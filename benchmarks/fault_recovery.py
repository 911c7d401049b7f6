"""Benchmark: recovery after each fault, in real DAG runs of the production shape.

Runs the end-to-end fault tests (tests/e2e/test_airflow_faults.py: one production-shape stack,
four DAG runs with a fault each) and collects what each measured, in seconds:

- ``train process killed``: from the SIGKILL of the ``train`` task's process (inside its MLflow
  run) until Airflow's retry of ``train`` succeeded, and until the run did;
- ``MLflow down during register``: from MLflow answering again until ``register``'s retry
  succeeded, and until the run did;
- ``S3 down during ingest``: from S3 answering again until ``ingest``'s retry succeeded, and
  until the run did;
- ``scheduler killed and restarted``: from the SIGKILL, and from the new scheduler being healthy,
  until the run succeeded.

The tests set ``TRAINYARD_TASK_RETRY_DELAY=2`` (the shipped default is 30 s, doubled per retry,
so in a deployment add 30–60 s to the first three faults' figures). Needs the local PostgreSQL
and Redis.

Usage: python benchmarks/fault_recovery.py
Writes benchmarks/results/fault_recovery.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TESTS = "tests/e2e/test_airflow_faults.py"


def main() -> None:
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        figures_file = Path(folder) / "figures.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", TESTS],
            cwd=REPO,
            env={**os.environ, "CI": "true", "TRAINYARD_FAULT_FIGURES": str(figures_file)},
            capture_output=True,
            text=True,
        )
        figures = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    report = {
        "figures_seconds": figures,
        "tests": summary,
        "tests_exit_code": done.returncode,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "task_retry_delay_seconds": 2,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fault_recovery.json").write_text(json.dumps(report, indent=2))
    for fault, measured in figures.items():
        times = ", ".join(f"{name} {value:.1f} s" for name, value in measured.items())
        print(f"{fault:32} {times}")
    print(f"tests: {summary}; load average {load_at_start} -> {os.getloadavg()}")
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
        sys.exit(done.returncode)


if __name__ == "__main__":
    main()

"""Benchmark (a): parse time of each DAG file against a trivial DAG file of the same size.

For every file in dags/, a trivial file is generated with the same number of DAGs and the same
number of tasks per DAG (chained no-op @task functions). Both are parsed repeatedly with
``DagBag(safe_mode=False)`` in one warm process (Airflow already imported, as in the
dag-processor, which pre-imports a DAG file's modules), and once each in a fresh process
(cold: interpreter start, Airflow import and all). Goal: warm median ratio <= 2.

Usage: python benchmarks/parse_time.py [--repeats N]
Writes benchmarks/results/parse_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

TRIVIAL_TEMPLATE = '''"""Trivial airflow DAG file: {dags} DAGs x {tasks} chained no-op tasks."""
from datetime import datetime, timedelta, timezone
from airflow.sdk import DAG, Param, task

for index in range({dags}):
    with DAG(f"trivial_{{index}}", schedule=None,
             start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False, {extras}) as dag:
        previous = None
        for number in range({tasks}):
            @task(task_id=f"step_{{number}}")
            def step():
                return None
            current = step()
            if previous is not None:
                previous >> current
            previous = current
    globals()[dag.dag_id] = dag
'''
# The same Params and default_args as the training DAGs: Airflow copies the Params into every
# task and validates them, a cost of the feature rather than of our code.
SAME_PARAMS_EXTRAS = """params={
        "window_end": Param(None, type=["null", "string"], format="date"),
        "window_days": Param(None, type=["null", "integer"], minimum=1),
        "reason": Param("", type="string")},
    default_args={"owner": "x", "retries": 2, "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=3)}"""


def parse_once(path: Path) -> tuple[float, dict[str, int]]:
    """Parse one file with a fresh DagBag; return seconds and {dag_id: task count}."""
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    elapsed = time.perf_counter() - start
    if bag.import_errors:
        raise RuntimeError(f"import errors parsing {path}: {bag.import_errors}")
    return elapsed, {dag_id: len(dag.tasks) for dag_id, dag in bag.dags.items()}


def cold_parse(path: Path) -> float:
    """Seconds for a fresh interpreter to import Airflow and parse the file."""
    code = (
        "import time; t=time.perf_counter();"
        "from airflow.dag_processing.dagbag import DagBag;"
        f"b=DagBag(dag_folder={str(path)!r}, safe_mode=False);"
        "assert not b.import_errors, b.import_errors;"
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))

    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        _, shape = parse_once(dag_file)  # warm-up: imports the file's modules once
        tasks = max(shape.values())
        trivial = workdir / f"trivial_{dag_file.stem}.py"
        trivial.write_text(TRIVIAL_TEMPLATE.format(dags=len(shape), tasks=tasks, extras=""))
        with_params = workdir / f"trivial_params_{dag_file.stem}.py"
        with_params.write_text(
            TRIVIAL_TEMPLATE.format(dags=len(shape), tasks=tasks, extras=SAME_PARAMS_EXTRAS)
        )
        parse_once(trivial)
        parse_once(with_params)
        ours, baseline, baseline_params = [], [], []
        for _ in range(args.repeats):  # interleaved so drift in machine load hits all three
            ours.append(parse_once(dag_file)[0])
            baseline.append(parse_once(trivial)[0])
            baseline_params.append(parse_once(with_params)[0])
        row = {
            "file": dag_file.name,
            "dags": len(shape),
            "tasks_per_dag": shape,
            "warm_median_s": statistics.median(ours),
            "warm_trivial_median_s": statistics.median(baseline),
            "warm_ratio": statistics.median(ours) / statistics.median(baseline),
            "warm_trivial_same_params_median_s": statistics.median(baseline_params),
            "warm_ratio_same_params": statistics.median(ours) / statistics.median(baseline_params),
            "cold_s": cold_parse(dag_file),
            "cold_trivial_s": cold_parse(trivial),
        }
        row["cold_ratio"] = row["cold_s"] / row["cold_trivial_s"]
        results.append(row)
        print(
            f"{row['file']}: {row['dags']} DAGs; warm {row['warm_median_s'] * 1000:.1f} ms vs "
            f"trivial {row['warm_trivial_median_s'] * 1000:.1f} ms (x{row['warm_ratio']:.2f}), "
            f"trivial with the same Params "
            f"{row['warm_trivial_same_params_median_s'] * 1000:.1f} ms "
            f"(x{row['warm_ratio_same_params']:.2f}); "
            f"cold {row['cold_s']:.2f} s vs {row['cold_trivial_s']:.2f} s "
            f"(x{row['cold_ratio']:.2f})"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parse_time.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

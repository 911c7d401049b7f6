"""Benchmark: batch scoring of 1M rows through the DAG vs ``predict_proba`` in one process, and
the performance monitor on 1M predictions joined with 1M labels.

One SeaweedFS + MLflow server (free ports, temporary state). A champion is trained on two weeks
of churn (5,000 rows a day, in this process), then one day of 1,000,000 rows lands without labels.
In one run, each side in its own fresh process (so imports and peak RSS are comparable):

1. reference: load the champion, read the day's Parquet from S3, ``model.predict_proba`` on the
   features; timed: predict_proba alone, and read + predict;
2. DAG: ``score_churn`` with ``dag.test()`` (every task in that process: champion, batch
   snapshot, GX validation minus the target's expectations, scoring, prediction log + manifest);
3. monitor: the day's labels land (1M rows), then ``trainyard monitor`` (baseline, read the
   prediction log and labels, join by id, metrics, summary to S3, MLflow run).

Wall time and peak RSS (the process and its children, sampled) for each, and each DAG task's
duration (the rest of the DAG's wall time is Airflow's: creating the run, starting its in-process
execution API, running each task). Goal: DAG <= 1.5x the reference. Steps 1-2 are also run on a
smaller day (``--small-rows``): the difference between the two days is the cost per row, without
the fixed cost of a run (imports, Airflow, the model's download), reported as marginal ratios.
Usage: python benchmarks/scoring_and_monitoring.py [--rows N] [--small-rows N]
Writes benchmarks/results/scoring_and_monitoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_wall_time import TreeMemory  # noqa: E402 (the benchmarks' one RSS sampler)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRAIN_END = date(2026, 6, 14)
SCORE_DAY = date(2026, 6, 20)
SMALL_DAY = SCORE_DAY + timedelta(days=1)
MODEL = "churn_bench_scoring"

REFERENCE = """
import io, json, sys, time
import mlflow, pyarrow.parquet as pq
from trainyard.core import storage
from trainyard.core.settings import Settings
from trainyard.core.spec import load_spec
spec = load_spec(__import__("pathlib").Path(sys.argv[1]))
settings = Settings.from_env()
model = mlflow.sklearn.load_model(sys.argv[2])
started = time.perf_counter()
frame = pq.read_table(io.BytesIO(storage.get_bytes(settings, sys.argv[3]))).to_pandas()
features = frame[list(spec.schema_.features)].astype(
    dict.fromkeys(spec.schema_.numeric_features, "float64"))
read = time.perf_counter()
model.predict_proba(features)
done = time.perf_counter()
result = {"predict_proba_s": done - read, "read_and_predict_s": done - started}
print("RESULT " + json.dumps(result))
"""

DAG_TEST = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
assert not bag.import_errors, bag.import_errors
started = time.perf_counter()
run = bag.dags["score_churn"].test(run_conf={"window_end": sys.argv[2]})
wall = time.perf_counter() - started
tasks = {ti.task_id: ti.duration for ti in run.get_task_instances()}
result = {"wall_s": wall, "state": str(run.state), "tasks_s": tasks,
          "airflow_s": wall - sum(d or 0 for d in tasks.values())}
print("RESULT " + json.dumps(result))
"""


def measured(command: list[str], env: dict[str, str]) -> dict:
    """Run a command; its wall time, peak RSS of its process tree, and its RESULT line."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{text[-3000:]}")
    result = {"process_wall_s": wall, "peak_rss_mb": memory.peak_total / 2**20}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT ") :]))
    return result


def score_day(day: date, spec_path: Path, settings: object, env: dict[str, str]) -> tuple:
    """The reference and the DAG on one day's rows, each in a fresh process.

    Returns:
        Their measurements.
    """
    partition = f"s3://{settings.raw_bucket}/churn/date={day}/part-0000.parquet"
    reference = measured(
        [sys.executable, "-c", REFERENCE, str(spec_path), f"models:/{MODEL}@champion", partition],
        env,
    )
    print(f"{day} reference: {reference}", flush=True)
    dag = measured([sys.executable, "-c", DAG_TEST, str(REPO / "dags"), day.isoformat()], env)
    print(f"{day} DAG      : {dag}", flush=True)
    if dag.get("state") != "success":
        raise RuntimeError(f"the scoring run of {day} ended {dag.get('state')}")
    return reference, dag


def write_spec(directory: Path) -> Path:
    """churn, unscheduled, registering its own model; one daily window for the monitor."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["schedule"] = None
    data["window"]["days"] = 14
    data["model"]["registered_name"] = MODEL
    data["scoring"]["schedule"] = None
    data["performance"].update(schedule=None, consecutive_windows=1)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "churn.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    args = parser.parse_args()

    from trainyard.core.settings import Settings
    from trainyard_dev.churn import Knobs, land_days
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    load_before = os.getloadavg()
    state = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    spec_path = write_spec(state / "pipelines")
    stack = Stack(state_dir=state / "stack", ports=Ports.free())
    try:
        stack.up(airflow=False)
        env = {
            **os.environ,
            **stack.client_env(),
            "TRAINYARD_PIPELINES_DIR": str(spec_path.parent),
            "AIRFLOW_HOME": str(state / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "GX_ANALYTICS_ENABLED": "False",
        }
        os.environ.update(env)
        settings = Settings.from_env()
        bin_dir = Path(sys.executable).parent
        land_days(settings, TRAIN_END - timedelta(days=13), TRAIN_END, 5000)
        subprocess.run(
            [str(bin_dir / "trainyard"), "run", "churn", "--window-end", TRAIN_END.isoformat()],
            env=env,
            check=True,
            capture_output=True,
        )
        land_days(settings, SCORE_DAY, SCORE_DAY, args.rows, Knobs(labels_missing=True))
        land_days(settings, SMALL_DAY, SMALL_DAY, args.small_rows, Knobs(labels_missing=True))
        print(f"champion trained; {args.rows:,} and {args.small_rows:,} rows landed", flush=True)
        subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, check=True,
                       capture_output=True)  # fmt: skip

        small, big = (score_day(day, spec_path, settings, env) for day in (SMALL_DAY, SCORE_DAY))
        reference, dag = big

        land_days(settings, SCORE_DAY, SCORE_DAY, args.rows)  # the labels arrive
        monitor = measured(
            [str(bin_dir / "trainyard"), "monitor", "churn", "--window-end",
             SCORE_DAY.isoformat()],
            env,
        )  # fmt: skip
        print(f"monitor  : {monitor}", flush=True)
        per_rows = dag["wall_s"] - small[1]["wall_s"]  # the DAG's cost of the extra rows
        ratios = {
            "dag_vs_predict_proba": dag["wall_s"] / reference["predict_proba_s"],
            "dag_vs_read_and_predict": dag["wall_s"] / reference["read_and_predict_s"],
            "dag_process_vs_reference_process": dag["process_wall_s"] / reference["process_wall_s"],
            **{
                f"marginal_dag_vs_{key[:-2]}": per_rows / (reference[key] - small[0][key])
                for key in ("predict_proba_s", "read_and_predict_s")
            },
        }
        load = os.getloadavg()
        print(f"ratios   : {ratios}\nload average: {load_before} before, {load} after")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scoring_and_monitoring.json").write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "small_rows": args.small_rows,
                    "reference": reference,
                    "dag": dag,
                    "small": {"reference": small[0], "dag": small[1]},
                    "monitor": monitor,
                    "ratios": ratios,
                    "load_average_before": load_before,
                    "load_average": load,
                },
                indent=2,
            )
        )
    finally:
        stack.down()


if __name__ == "__main__":
    main()

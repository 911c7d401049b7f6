"""Benchmark: batch scoring of 1M rows through the DAG vs the minimal one-process equivalent,
and the performance monitor on 1M predictions joined with 1M labels.

One SeaweedFS + MLflow server (free ports, temporary state). A champion is trained on two weeks
of churn (5,000 rows a day, in this process), then one day of 1,000,000 rows lands without labels.
Each side runs as a whole fresh process, timed from Python's start to its exit, peak RSS of the
process tree sampled:

1. reference, the minimal one-process equivalent of what the DAG does: import MLflow, pandas,
   pyarrow; resolve ``models:/<name>@champion`` and load that version; read the day's raw
   Parquet from S3; ``predict_proba`` on the features; write the predictions (id, class,
   probabilities, version) as Parquet to S3. Inside it, ``predict_proba`` alone and read +
   predict are timed as well;
2. DAG: a fresh process that imports Airflow, parses ``dags/scoring_pipelines.py`` (only the
   file holding the DAG, as a worker does) and runs ``score_churn`` with ``dag.test()``: every
   task in that process (champion, batch snapshot, GX validation minus the target's
   expectations with Data Docs, scoring in pieces, prediction log + manifest + record);
3. Airflow's floor: the same kind of process running a one-task DAG that does nothing, the
   least any ``dag.test()`` process costs on this machine (Airflow's import, its in-process
   execution API, the run's bookkeeping, the interpreter's exit);
4. monitor: the day's labels land (1M rows), then ``trainyard monitor`` (baseline, read the
   prediction log and labels, join by id, metrics, summary to S3, MLflow run).

Why whole processes: the issue compares the DAG with ``predict_proba`` "on the same rows in one
process" and asks for the peak memory of each, so both sides are processes, and the reference
does the DAG's job with nothing extra (no snapshot, no validation, no records), so the headline
ratio (``dag_process_vs_reference_process``) is what the DAG's guarantees cost. To keep the
comparison open, the DAG's wall time is also reported against ``predict_proba`` alone and
against read + predict, each task's time and peak RSS, the DAG minus Airflow's floor, both
scripts without the interpreter's start and exit (exiting a process that imported Airflow
collects its whole object graph, ~2 s; Airflow's own task processes end with ``os._exit()``),
and the marginal ratios: the same runs on a smaller day (``--small-rows``, run first) and the
difference between the two days, the cost per row without any fixed cost of a run.
Goal (issue 9): DAG <= 1.5x the reference. ``--profile DIR`` runs the DAG processes under
cProfile (stats in DIR; times then not comparable).
Usage: python benchmarks/scoring_and_monitoring.py [--rows N] [--small-rows N] [--profile DIR]
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
SCORING_DAGS = REPO / "dags" / "scoring_pipelines.py"

REFERENCE = """
import io, json, sys, time
script_started = time.perf_counter()
from pathlib import Path
import mlflow, pyarrow.parquet as pq
from trainyard.core import storage
from trainyard.core.settings import Settings
from trainyard.core.spec import load_spec
from trainyard.data.predictions import prediction_frame
spec = load_spec(Path(sys.argv[1]))
settings = Settings.from_env()
name = spec.registered_model_name
version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion").version
model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
started = time.perf_counter()
frame = pq.read_table(io.BytesIO(storage.get_bytes(settings, sys.argv[2]))).to_pandas()
features = frame[list(spec.schema_.features)].astype(
    dict.fromkeys(spec.schema_.numeric_features, "float64"))
read = time.perf_counter()
probabilities = model.predict_proba(features)
done = time.perf_counter()
rows = prediction_frame(
    frame[spec.schema_.id_column], model.classes_.take(probabilities.argmax(axis=1)),
    probabilities, model.classes_, model_name=name, model_version=str(version),
    run_id="reference", source="batch", scored_at=__import__("pandas").Timestamp.now("UTC"))
body = io.BytesIO()
rows.to_parquet(body, compression="zstd", index=False)
storage.put_bytes(settings, sys.argv[3], body.getvalue(), "application/vnd.apache.parquet")
result = {"predict_proba_s": done - read, "read_and_predict_s": done - started,
          "script_s": time.perf_counter() - script_started}
print("RESULT " + json.dumps(result))
"""

DAG_TEST = """
import json, sys, threading, time
started = time.perf_counter()
import psutil
samples, done = [], threading.Event()
def sample():  # (time, RSS) every 0.1 s: each task's peak is the largest while it ran
    while not done.is_set():
        samples.append((time.time(), psutil.Process().memory_info().rss))
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
assert not bag.import_errors, bag.import_errors
parsed = time.perf_counter()
run = bag.dags[sys.argv[2]].test(run_conf=json.loads(sys.argv[3]))
wall = time.perf_counter() - parsed
done.set()
instances = run.get_task_instances()
tasks = {ti.task_id: ti.duration for ti in instances}
peaks = {ti.task_id: max((r for t, r in samples
                          if ti.start_date.timestamp() <= t <= ti.end_date.timestamp()),
                         default=0) / 2**20 for ti in instances if ti.end_date}
result = {"wall_s": wall, "state": str(run.state), "tasks_s": tasks, "tasks_peak_rss_mb": peaks,
          "airflow_s": wall - sum(d or 0 for d in tasks.values()),
          "import_airflow_s": imported - started, "parse_s": parsed - imported,
          "script_s": time.perf_counter() - started}
print("RESULT " + json.dumps(result))
"""

#: Airflow's own floor: the least a fresh ``dag.test()`` process costs here, one task doing nothing.
FLOOR_DAG = """
import pendulum
from airflow.sdk import DAG, task

with DAG(dag_id="floor", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):

    @task
    def nothing() -> None:
        return None

    nothing()
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
    if "script_s" in result:
        # The interpreter's start and, mostly, its exit: finalising a process that imported
        # Airflow collects its whole object graph (~2 s here). Airflow's own task processes
        # end with os._exit() and never pay it; dag.test() in a fresh process does.
        result["interpreter_start_and_exit_s"] = wall - result["script_s"]
    return result


def score_day(
    day: date, spec_path: Path, settings: object, env: dict[str, str], profile: Path | None
) -> tuple:
    """The reference and the DAG on one day's rows, each in a fresh process.

    Args:
        profile: If given, the DAG's process runs under cProfile and leaves its stats there
            (``dag-<day>.prof``); its times are then not comparable.

    Returns:
        Their measurements.
    """
    partition = f"s3://{settings.raw_bucket}/churn/date={day}/part-0000.parquet"
    output = f"s3://{settings.artifacts_bucket}/bench/reference/date={day}.parquet"
    reference = measured([sys.executable, "-c", REFERENCE, str(spec_path), partition, output], env)
    print(f"{day} reference: {reference}", flush=True)
    conf = json.dumps({"window_end": day.isoformat()})
    # Only the file holding the DAG, as a worker parses it before running a task.
    dag_command = [sys.executable, "-c", DAG_TEST, str(SCORING_DAGS), "score_churn", conf]
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        stats = profile / f"dag-{day}.prof"
        script = profile / "dag_test.py"
        script.write_text(DAG_TEST)
        dag_command = [sys.executable, "-m", "cProfile", "-o", str(stats), str(script),
                       *dag_command[3:]]  # fmt: skip
    dag = measured(dag_command, env)
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
    parser.add_argument(
        "--profile", type=Path, help="run the DAG processes under cProfile, stats into this dir"
    )
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

        floor_dir = state / "floor"
        floor_dir.mkdir()
        (floor_dir / "floor.py").write_text(FLOOR_DAG)
        floor = measured(
            [sys.executable, "-c", DAG_TEST, str(floor_dir / "floor.py"), "floor", "{}"],
            {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(floor_dir)},
        )
        print(f"floor    : {floor}", flush=True)
        small, big = (
            score_day(day, spec_path, settings, env, args.profile) for day in (SMALL_DAY, SCORE_DAY)
        )
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
            # The headline: whole fresh processes, start to exit, on both sides.
            "dag_process_vs_reference_process": dag["process_wall_s"] / reference["process_wall_s"],
            "dag_peak_rss_vs_reference": dag["peak_rss_mb"] / reference["peak_rss_mb"],
            # Both scripts from their first line to their last: without the interpreter's exit.
            "dag_script_vs_reference_script": dag["script_s"] / reference["script_s"],
            # Without Airflow's floor (a fresh dag.test() process of one task doing nothing).
            "dag_minus_floor_vs_reference_process": (
                dag["process_wall_s"] - floor["process_wall_s"]
            )
            / reference["process_wall_s"],
            "dag_vs_predict_proba": dag["wall_s"] / reference["predict_proba_s"],
            "dag_vs_read_and_predict": dag["wall_s"] / reference["read_and_predict_s"],
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
                    "airflow_floor": floor,
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

"""Benchmark: the training DAG under the production shape vs the embedded stack.

Three deployments in turn, each on its own free ports and temporary state, each with the same
churn partitions landed in its own S3 (the generator is deterministic: identical bytes):

1. ``standalone``: the embedded stack (``airflow standalone``: LocalExecutor, SQLite; MLflow on
   SQLite without auth);
2. ``celery-1-worker``: the production shape (CeleryExecutor, PostgreSQL, Redis broker; MLflow on
   PostgreSQL with basic auth), one Celery worker with 2 slots;
3. ``celery-2-workers``: the production shape with two Celery workers of one slot each.

On each, ``train_churn`` runs ``--repeats`` times one after the other (the first run is cold;
later ones find the snapshot and the registered version already there, as a nightly rerun on
unchanged data would), then ``train_breast_cancer`` once. On 1 and 3, ``train_churn`` and
``train_breast_cancer`` are then triggered together: the makespan (first start to last end) is
compared with the same two pipelines run one after the other. The machine's load average is
recorded at start and end: on a shared machine, figures move with it.

For each run: run wall time (start to end as Airflow records it), trigger-to-end time, the sum
of task durations, and the overhead (wall minus task time: scheduling, queueing, process start).
Scheduled runs are off (``use_job_schedule=False``) so only the benchmark's runs exist.

Usage: python benchmarks/production_shape.py [--rows-per-day N] [--days N] [--repeats N]
Writes benchmarks/results/production_shape.json. Needs the local PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WINDOW_END = date(2026, 6, 30)
NO_SCHEDULE = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
PIPELINES = REPO / "include" / "pipelines"


def land(stack: Any, days: int, rows_per_day: int) -> None:
    """The same churn partitions into this stack's S3."""
    import boto3

    from trainyard.core import storage
    from trainyard.core.settings import Settings
    from trainyard_dev.churn import land_days

    os.environ.update(stack.client_env())
    # boto3's default session keeps the first keys it read: start afresh for each stack.
    boto3.DEFAULT_SESSION = None
    storage._client.cache_clear()
    land_days(Settings.from_env(), WINDOW_END - timedelta(days=days - 1), WINDOW_END, rows_per_day)


def measure(api: Any, dag_id: str, run_id: str, triggered: float) -> dict[str, Any]:
    """Wait for one run and describe it.

    Raises:
        RuntimeError: The run failed (with its task states).
    """
    finished = api.wait_for_run(dag_id, run_id, timeout=1800)
    trigger_to_end = time.perf_counter() - triggered
    tasks = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    durations = {t["task_id"]: t["duration"] or 0.0 for t in tasks["task_instances"]}
    if finished["state"] != "success":
        raise RuntimeError(f"{dag_id} run {run_id}: {finished['state']} {durations}")
    start = datetime.fromisoformat(finished["start_date"])
    end = datetime.fromisoformat(finished["end_date"])
    wall = (end - start).total_seconds()
    return {
        "dag_id": dag_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "wall_s": round(wall, 2),
        "trigger_to_end_s": round(trigger_to_end, 2),
        "task_time_s": round(sum(durations.values()), 2),
        "overhead_s": round(wall - sum(durations.values()), 2),
        "task_durations_s": {k: round(v, 2) for k, v in durations.items()},
        "queues": {t["task_id"]: t.get("queue") for t in tasks["task_instances"]},
    }


def sequential(api: Any, repeats: int) -> list[dict[str, Any]]:
    """train_churn ``repeats`` times, then train_breast_cancer once, one after the other."""
    runs = []
    for number in range(repeats):
        triggered = time.perf_counter()
        run = api.trigger(
            "train_churn",
            conf={"window_end": WINDOW_END.isoformat(), "reason": f"benchmark {number}"},
        )
        runs.append(measure(api, "train_churn", run["dag_run_id"], triggered))
        print(f"  train_churn #{number + 1}: {runs[-1]['wall_s']:.1f} s", flush=True)
    triggered = time.perf_counter()
    run = api.trigger("train_breast_cancer", conf={"reason": "benchmark alone"})
    runs.append(measure(api, "train_breast_cancer", run["dag_run_id"], triggered))
    print(f"  train_breast_cancer: {runs[-1]['wall_s']:.1f} s", flush=True)
    return runs


def concurrent(api: Any) -> dict[str, Any]:
    """train_churn and train_breast_cancer triggered together: makespan and each run."""
    triggered = time.perf_counter()
    churn = api.trigger("train_churn", conf={"window_end": WINDOW_END.isoformat()})
    cancer = api.trigger("train_breast_cancer", conf={"reason": "benchmark"})
    runs = [
        measure(api, "train_churn", churn["dag_run_id"], triggered),
        measure(api, "train_breast_cancer", cancer["dag_run_id"], triggered),
    ]
    first = min(datetime.fromisoformat(r["start"]) for r in runs)
    last = max(datetime.fromisoformat(r["end"]) for r in runs)
    makespan = (last - first).total_seconds()
    result = {
        "runs": runs,
        "makespan_s": round(makespan, 2),
        "sum_of_walls_s": round(sum(r["wall_s"] for r in runs), 2),
        "trigger_to_both_done_s": round(time.perf_counter() - triggered, 2),
    }
    print(
        f"  two pipelines at once: makespan {makespan:.1f} s "
        f"(runs {runs[0]['wall_s']:.1f} s + {runs[1]['wall_s']:.1f} s)",
        flush=True,
    )
    return result


def prepare(api: Any) -> None:
    """Wait for both training DAGs and unpause them."""
    for dag_id in ("train_churn", "train_breast_cancer"):
        api.wait_for_dag(dag_id)
        api.set_paused(dag_id, False)


def bench_standalone(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The embedded stack: LocalExecutor on SQLite."""
    from trainyard_dev.demo import api_for
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    stack = Stack(
        state_dir=root / "standalone",
        ports=Ports.free(),
        extra_env={**NO_SCHEDULE, "TRAINYARD_PIPELINES_DIR": str(PIPELINES)},
    )
    try:
        started = time.perf_counter()
        stack.up()
        up = time.perf_counter() - started
        land(stack, args.days, args.rows_per_day)
        api = api_for(stack)
        prepare(api)
        print(f"standalone up in {up:.0f} s", flush=True)
        return {"startup_s": round(up, 1), "sequential": sequential(api, args.repeats),
                "concurrent": concurrent(api)}  # fmt: skip
    finally:
        stack.down()


def bench_celery(
    root: Path, name: str, workers: int, slots: int, args: argparse.Namespace, parts: set[str]
) -> dict[str, Any]:
    """The production shape with ``workers`` Celery workers of ``slots`` slots each.

    Args:
        parts: Which measurements: ``sequential`` and/or ``concurrent``.
    """
    from trainyard_dev.prodstack.stack import ProdStack
    from trainyard_dev.services import Ports

    stack = ProdStack(
        state_dir=root / name,
        ports=Ports.free(),
        environ={},
        workers=workers,
        worker_concurrency=slots,
        pipelines_dir=PIPELINES,
        airflow_overrides=NO_SCHEDULE,
    )
    try:
        started = time.perf_counter()
        stack.up()
        up = time.perf_counter() - started
        land(stack, args.days, args.rows_per_day)
        api = stack.api()
        prepare(api)
        print(f"{name} up in {up:.0f} s", flush=True)
        result: dict[str, Any] = {"startup_s": round(up, 1), "workers": workers, "slots": slots}
        if "sequential" in parts:
            result["sequential"] = sequential(api, args.repeats)
        if "concurrent" in parts:
            result["concurrent"] = concurrent(api)
            result["tasks_per_worker"] = {
                worker: stack.log_path(worker).read_text().count("] received")
                for worker in stack.worker_names
            }
        return result
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=5000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from trainyard_dev.config import StackConfig
    from trainyard_dev.prodstack.servers import PostgresServer, redis_reachable

    config = StackConfig.from_env()
    postgres = PostgresServer(config.postgres_url)
    redis_url = config.redis_url
    problems = [p for p in (postgres.reachable(), redis_reachable(redis_url)) if p]
    if problems:
        raise SystemExit("needs the local PostgreSQL and Redis: " + "; ".join(problems))

    with tempfile.TemporaryDirectory(prefix="bench-prod-shape-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        results = {
            "rows": args.rows_per_day * args.days,
            "days": args.days,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "when": datetime.now().isoformat(timespec="seconds"),
            "load_average_at_start": os.getloadavg(),
            "standalone": bench_standalone(root, args),
            "celery_1_worker": bench_celery(root, "celery-1-worker", 1, 2, args, {"sequential"}),
            "celery_2_workers": bench_celery(
                root, "celery-2-workers", 2, 1, args, {"sequential", "concurrent"}
            ),
            "load_average_at_end": os.getloadavg(),
        }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "production_shape.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Benchmark: from the drift verdict to the training run starting, under ``airflow standalone``.

An embedded stack (SeaweedFS, MLflow server, ``airflow standalone`` with LocalExecutor; free
ports, temporary state) gets 28 stable churn days and one drifted day; a champion is trained in
this process (``trainyard.training.steps.run``). The benchmark's spec is churn with no
schedules (nothing starts on its own) and ``cooldown_hours: 0`` (every drift run may retrain).

Then, ``--reps`` times: trigger ``drift_churn`` through the REST API, wait for it, wait for the
training run it triggered to finish (so the next repetition is not suppressed as "training
running"), and read the times Airflow recorded:

- verdict: end of the ``check_drift`` task (the summary exists from then on);
- trigger: end of ``trigger_retrain`` (the training run exists, queued);
- training run start: the run's ``start_date`` (the scheduler set it running), and the start of
  its first task (``ingest``).

Goal: verdict -> training run start <= 60 s.

Usage: python benchmarks/drift_to_retrain_latency.py [--reps N] [--rows-per-day N] [--keep]
Writes benchmarks/results/drift_to_retrain_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REFERENCE_END = date(2026, 6, 28)
DRIFT_DAY = date(2026, 6, 29)
DRIFT = {"tenure_months": 1.0, "monthly_charges": 1.0, "support_calls": 1.0}


def write_spec(directory: Path) -> Path:
    """churn.yaml without schedules and without cooldown."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["schedule"] = None
    data["drift"].update(schedule=None, cooldown_hours=0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "churn.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def task_times(api: Any, dag_id: str, run_id: str) -> dict[str, dict[str, datetime | None]]:
    """task id -> start and end as Airflow recorded them."""
    from urllib.parse import quote

    page = api.request(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    )
    return {
        ti["task_id"]: {"start": _when(ti["start_date"]), "end": _when(ti["end_date"])}
        for ti in page["task_instances"]
    }


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    """later - earlier in seconds (None if either is missing)."""
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 2)


def one_repetition(api: Any) -> dict[str, Any]:
    """Trigger a drift run, follow the retrain it triggers, return the measured intervals."""
    requested = time.time()
    run = api.trigger("drift_churn", conf={"window_end": DRIFT_DAY.isoformat()})
    finished = api.wait_for_run("drift_churn", run["dag_run_id"], timeout=900)
    if finished["state"] != "success":
        raise RuntimeError(f"drift run {run['dag_run_id']} ended {finished['state']}")
    drift_tasks = task_times(api, "drift_churn", run["dag_run_id"])
    decision = api.xcom("drift_churn", run["dag_run_id"], "decide")
    if not decision.get("retrain"):
        raise RuntimeError(f"no retrain: {decision.get('message')}")
    training_run_id = decision["training_run_id"]
    trained = api.wait_for_run("train_churn", training_run_id, timeout=1800)
    training_tasks = task_times(api, "train_churn", training_run_id)
    verdict = drift_tasks["check_drift"]["end"]
    triggered = drift_tasks["trigger_retrain"]["end"]
    run_start = _when(trained["start_date"])
    first_task = training_tasks["ingest"]["start"]
    return {
        "drift_run_id": run["dag_run_id"],
        "training_run_id": training_run_id,
        "training_state": trained["state"],
        "verdict_to_training_run_start_s": seconds(run_start, verdict),
        "verdict_to_first_training_task_start_s": seconds(first_task, verdict),
        "verdict_to_trigger_s": seconds(triggered, verdict),
        "trigger_to_training_run_start_s": seconds(run_start, triggered),
        "drift_run_duration_s": seconds(_when(finished["end_date"]), _when(finished["start_date"])),
        "check_drift_task_s": seconds(verdict, drift_tasks["check_drift"]["start"]),
        "request_to_verdict_s": round(verdict.timestamp() - requested, 2),
        "training_run_duration_s": seconds(_when(trained["end_date"]), run_start),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = parser.parse_args()

    from trainyard_dev.airflow_api import AirflowApi
    from trainyard_dev.devstack import AIRFLOW_ADMIN, Stack
    from trainyard_dev.services import Ports

    state = Path(tempfile.mkdtemp(prefix="trainyard-bench-latency-"))
    pipelines = state / "pipelines"
    spec_path = write_spec(pipelines)
    stack = Stack(
        state_dir=state / "stack",
        ports=Ports.free(),
        extra_env={"TRAINYARD_PIPELINES_DIR": str(pipelines)},
    )
    try:
        started = time.monotonic()
        stack.up()
        startup = time.monotonic() - started
        os.environ.update(stack.client_env())
        print(f"stack up in {startup:.0f} s ({stack.airflow_url})", flush=True)

        from trainyard.core.lineage import RunContext
        from trainyard.core.settings import Settings
        from trainyard.core.spec import load_spec
        from trainyard.data.snapshots import TrainingWindow
        from trainyard.training.steps import run as run_pipeline
        from trainyard_dev.churn import Knobs, land_days

        settings = Settings.from_env()
        start = REFERENCE_END - timedelta(days=27)
        land_days(settings, start, REFERENCE_END, args.rows_per_day)
        land_days(settings, DRIFT_DAY, DRIFT_DAY, args.rows_per_day, Knobs(covariate_drift=DRIFT))
        champion = run_pipeline(
            load_spec(spec_path),
            settings,
            TrainingWindow(start=start, end=REFERENCE_END),
            RunContext.for_cli("churn", "benchmark: champion"),
        )
        print(f"champion: {champion.model_name} v{champion.version}", flush=True)

        api = AirflowApi(stack.airflow_url, AIRFLOW_ADMIN, stack.credentials.airflow_password)
        for dag_id in ("drift_churn", "train_churn"):
            api.wait_for_dag(dag_id)
            api.set_paused(dag_id, False)
        repetitions = []
        for index in range(args.reps):
            figures = one_repetition(api)
            repetitions.append(figures)
            print(
                f"rep {index + 1}: verdict -> training run start "
                f"{figures['verdict_to_training_run_start_s']} s (first task "
                f"{figures['verdict_to_first_training_task_start_s']} s; verdict -> trigger "
                f"{figures['verdict_to_trigger_s']} s, trigger -> start "
                f"{figures['trigger_to_training_run_start_s']} s); training "
                f"{figures['training_state']}",
                flush=True,
            )
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)

    latencies = [r["verdict_to_training_run_start_s"] for r in repetitions]
    summary = {
        "goal_s": 60,
        "verdict_to_training_run_start_s": {
            "min": min(latencies),
            "median": statistics.median(latencies),
            "max": max(latencies),
        },
        "met_goal": max(latencies) <= 60,
        "stack_startup_s": round(startup, 1),
        "executor": "LocalExecutor (airflow standalone, SQLite)",
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "repetitions": repetitions,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "drift_to_retrain_latency.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    figures = summary["verdict_to_training_run_start_s"]
    print(f"verdict -> training run start: {figures}; goal met: {summary['met_goal']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: start the embedded stack, land churn data, train through Airflow, show results."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trainyard.airflow_api import AirflowApi
from trainyard.devstack import AIRFLOW_ADMIN, REPO_DIR, Ports, Stack

DEMO_DAYS = 35
DEMO_ROWS_PER_DAY = 2000


def default_stack() -> Stack:
    """The stack in ``$TRAINYARD_STATE_DIR`` (default ``.stack/``), ports from the environment."""
    state = Path(os.environ.get("TRAINYARD_STATE_DIR", REPO_DIR / ".stack"))
    return Stack(state_dir=state, ports=Ports.from_env())


def land_demo_data(stack: Stack, days: int = DEMO_DAYS, rows_per_day: int = DEMO_ROWS_PER_DAY):
    """Write stable churn partitions for the ``days`` days up to yesterday (UTC).

    Returns:
        The first and last dates written.
    """
    from trainyard.churn_generator import land_days
    from trainyard.settings import Settings

    os.environ.update(stack.client_env())
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=days - 1)
    land_days(Settings.from_env(), start, yesterday, rows_per_day)
    return start, yesterday


def api_for(stack: Stack) -> AirflowApi:
    """An authenticated REST client for the stack's Airflow."""
    return AirflowApi(stack.airflow_url, AIRFLOW_ADMIN, stack.credentials.airflow_password)


def train_through_airflow(api: AirflowApi, dag_id: str, reason: str) -> tuple[dict, dict | None]:
    """Trigger a training run through the REST API and wait for it.

    Returns:
        The finished run and its ``report`` outcome (None when the run failed).
    """
    run = api.trigger(dag_id, conf={"reason": reason})
    print(f"triggered {dag_id} run {run['dag_run_id']}; waiting ...", flush=True)
    finished = api.wait_for_run(dag_id, run["dag_run_id"])
    outcome = None
    if finished["state"] == "success":
        outcome = api.xcom(dag_id, run["dag_run_id"], "report")
    return finished, outcome


def print_outcome(outcome: dict) -> None:
    """Human-readable outcome of a training run."""
    from trainyard.pipeline import Outcome

    print(Outcome.model_validate(outcome).describe())


def print_access(stack: Stack) -> None:
    """URLs and logins of the UIs."""
    print(
        "\n".join(
            [
                "",
                f"Airflow UI : {stack.airflow_url}  (user {AIRFLOW_ADMIN}, "
                f"password {stack.credentials.airflow_password})",
                f"MLflow UI  : {stack.mlflow_url}  (no login on the embedded stack)",
                f"S3 (SeaweedFS): {stack.s3_url}  (keys in {stack.state_dir / 'stack.env'})",
                f"Use the CLI against this stack: source {stack.state_dir / 'stack.env'}",
                "Stop everything: make down",
            ]
        )
    )


def run_demo(stack: Stack | None = None) -> int:
    """The whole demo. Safe to run again while the stack is up.

    Returns:
        Process exit code: 0 when the training run succeeded.
    """
    stack = stack or default_stack()
    print(f"starting the embedded stack under {stack.state_dir} ...", flush=True)
    stack.up()
    start, end = land_demo_data(stack)
    print(f"landed churn partitions {start} .. {end}", flush=True)
    api = api_for(stack)
    for dag_id in ("train_churn", "train_breast_cancer"):
        api.wait_for_dag(dag_id)
        api.set_paused(dag_id, False)
    finished, outcome = train_through_airflow(api, "train_churn", "demo: make demo")
    print(f"\nrun {finished['dag_run_id']} of train_churn: {finished['state']}")
    if outcome is None:
        states = api.task_states("train_churn", finished["dag_run_id"])
        print(f"task states: {states}; see the task logs in the Airflow UI")
    else:
        print_outcome(outcome)
        trained_by = outcome["lineage"].get("airflow_run_id")
        if trained_by and trained_by != finished["dag_run_id"]:
            print(
                f"note: v{outcome['version']} was trained by run {trained_by} on the same data, "
                "spec and code (unpausing a DAG with catchup=False starts its latest scheduled "
                "run), so this run reused it instead of registering a duplicate."
            )
    print_access(stack)
    return 0 if outcome is not None else 1

"""Helpers to run DAGs with ``dag.test()`` against the session's real services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

#: Tags every registered model version must carry (its lineage).
LINEAGE_TAGS = {
    "snapshot_uri",
    "snapshot_sha256",
    "validation_result_uri",
    "airflow_dag_id",
    "airflow_run_id",
    "trigger_reason",
    "git_commit",
    "spec_sha256",
    "window_start",
    "window_end",
    "mlflow_run_id",
    "fingerprint",
}


@dataclass
class DagRunResult:
    """A finished test run: its state, each task's state and each task's return value."""

    run_id: str
    state: str
    task_states: dict[str, str | None]
    xcoms: dict[str, Any]


def _xcoms(dag_id: str, run_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.key == "return_value",
        )
        return {row.task_id: row.value for row in rows}


@pytest.fixture(scope="session")
def run_dag(stack: Any, airflow_db: None):
    """Run a DAG from the DAGs folder in-process and return what happened."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    def run(dag_id: str, conf: dict[str, Any]) -> DagRunResult:
        bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        assert dag_id in bag.dags, f"{dag_id} not in the DagBag: {sorted(bag.dag_ids)}"
        dag = bag.dags[dag_id]
        dag_run = dag.test(run_conf=conf)
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        return DagRunResult(
            run_id=dag_run.run_id,
            state=str(dag_run.state),
            task_states={k: (str(v) if v is not None else None) for k, v in states.items()},
            xcoms=_xcoms(dag_id, dag_run.run_id),
        )

    return run

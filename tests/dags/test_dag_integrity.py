"""DAG validation over the whole DAGs folder: imports, policy, parse cost, bad specs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

SHIPPED_PIPELINES = REPO / "include" / "pipelines"
HEAVY_MODULES = ("great_expectations", "evidently", "mlflow", "sklearn", "scipy", "skops")


def _dagbag(pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(pipelines_dir))
    return DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)


@pytest.fixture(scope="module")
def dagbag():
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _dagbag(SHIPPED_PIPELINES, monkeypatch)


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_one_training_dag_per_shipped_spec(dagbag) -> None:
    specs = {path.stem for path in SHIPPED_PIPELINES.glob("*.yaml")}
    assert {f"train_{name}" for name in specs} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("policy", ["owner", "tags", "retries", "catchup", "doc_md", "schedule"])
def test_every_dag_follows_policy(dagbag, policy: str) -> None:
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if policy == "owner" and any(t.owner in (None, "", "airflow") for t in dag.tasks):
            problems.append(dag_id)
        if policy == "tags" and not dag.tags:
            problems.append(dag_id)
        if policy == "retries":
            for t in dag.tasks:
                retried = t.retries >= 1 and t.retry_exponential_backoff >= 2
                # The gate only reads an XCom; retrying a decision would change nothing.
                if not retried and t.task_id != "gate":
                    problems.append(f"{dag_id}.{t.task_id}")
        if policy == "catchup" and dag.catchup:
            problems.append(dag_id)
        if policy == "doc_md" and not (dag.doc_md and len(dag.doc_md) > 200):
            problems.append(dag_id)
        one_at_a_time = dag.dag_id.startswith(("train_", "drift_", "score_", "performance_"))
        if policy == "schedule" and one_at_a_time and dag.max_active_runs != 1:
            problems.append(dag_id)
    assert problems == []


def test_training_dag_shape_and_params(dagbag) -> None:
    dag = dagbag.dags["train_churn"]
    assert dag.timetable.expression == "0 2 * * *"
    assert dag.max_active_runs == 1
    assert set(dag.params) >= {"window_end", "window_days", "reason"}
    # Off unless a person asks: an incompatible champion otherwise fails the gate.
    assert dag.params["replace_incompatible_champion"] is False
    assert dag.params["allow_older_window"] is False
    order = ["ingest", "validate", "train", "evaluate", "gate", "register", "report"]
    assert set(dag.task_ids) == set(order)
    assert_chain(dag, order)
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=3)


def test_approval_mode_adds_a_required_action_between_register_and_report() -> None:
    from datetime import timedelta

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from trainyard.core.spec import load_spec
    from trainyard.training.dag import build_training_dag

    spec = load_spec(REPO / "tests" / "pipelines" / "churn_approval.yaml")
    dag = build_training_dag(spec)
    order = ["register", "ask", "approval", "promote", "settle", "report"]
    assert_chain(dag, order)
    approval = dag.get_task("approval")
    assert isinstance(approval, ApprovalOperator)
    assert approval.response_timeout == timedelta(seconds=60)
    assert approval.defaults == ["Approve"]  # the spec's on_timeout
    assert set(approval.params) == {"comment"}
    assert "by approval" in dag.doc_md
    # auto mode (the shipped specs) keeps the DAG as it was.
    auto = build_training_dag(load_spec(SHIPPED_PIPELINES / "churn.yaml"))
    assert "approval" not in auto.task_ids


def test_one_manual_rollback_dag_per_spec_whose_reason_is_required(dagbag) -> None:
    import copy

    specs = {path.stem for path in SHIPPED_PIPELINES.glob("*.yaml")}
    assert {d for d in dagbag.dag_ids if d.startswith("rollback_")} == {
        f"rollback_{name}" for name in specs
    }
    dag = dagbag.dags["rollback_churn"]
    assert dag.schedule is None
    assert dag.task_ids == ["rollback"]
    params = copy.deepcopy(dag.params)
    params["reason"] = "v5 misbehaves"
    with pytest.raises(Exception, match="too short|minLength|non-empty"):
        params["reason"] = ""


def test_one_drift_monitor_per_partitioned_spec_none_for_static_data(dagbag) -> None:
    drift_ids = {dag_id for dag_id in dagbag.dag_ids if dag_id.startswith("drift_")}
    assert drift_ids == {"drift_churn"}  # breast_cancer is a static sklearn dataset


def test_a_windowed_sql_query_gets_a_drift_monitor_a_static_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = yaml.safe_load(
        (REPO / "docs" / "examples" / "pipelines" / "churn_sql.yaml").read_text()
    )
    static = {
        **example,
        "name": "static_sql",
        "model": {**example["model"], "registered_name": "s"},
    }
    static["source"] = {**example["source"], "query": "SELECT * FROM customer_events ORDER BY 1"}
    for data in (example, static):
        (tmp_path / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))

    bag = _dagbag(tmp_path, monkeypatch)

    assert bag.import_errors == {}
    assert {d for d in bag.dag_ids if d.startswith("drift_")} == {"drift_churn_sql"}
    dag = bag.dags["drift_churn_sql"]
    assert dag.get_task("trigger_retrain").trigger_dag_id == "train_churn_sql"
    assert "the query's rows" in dag.doc_md
    assert "default: the run day" in dag.params.get_param("window_end").description


def test_drift_dag_shape_params_and_trigger(dagbag) -> None:
    dag = dagbag.dags["drift_churn"]
    assert dag.timetable.expression == "0 * * * *"
    assert dag.max_active_runs == 1
    assert set(dag.params) >= {"window_end", "window_days", "force"}
    order = [
        "reference",
        "current",
        "validate",
        "check_drift",
        "decide",
        "retrain_requested",
        "trigger_retrain",
        "record_retrain",
    ]
    assert set(dag.task_ids) == set(order)
    assert_chain(dag, order)
    trigger = dag.get_task("trigger_retrain")
    assert trigger.trigger_dag_id == "train_churn"
    assert trigger.skip_when_already_exists is True
    assert trigger.wait_for_completion is False
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=1)
    assert "drift_report_uri" in dagbag.dags["train_churn"].params


def test_one_scoring_dag_per_spec_with_a_scoring_section(dagbag) -> None:
    scoring_ids = {dag_id for dag_id in dagbag.dag_ids if dag_id.startswith("score_")}
    assert scoring_ids == {"score_churn"}  # breast_cancer has no scoring section
    dag = dagbag.dags["score_churn"]
    assert dag.timetable.expression == "0 4 * * *"
    assert set(dag.params) >= {"window_end", "window_days"}
    order = ["champion", "batch", "validate", "score"]
    assert set(dag.task_ids) == set(order)
    assert_chain(dag, order)


def test_performance_monitor_shares_the_drift_monitors_retrain_tasks(dagbag) -> None:
    assert {d for d in dagbag.dag_ids if d.startswith("performance_")} == {"performance_churn"}
    dag = dagbag.dags["performance_churn"]
    assert dag.timetable.expression == "0 6 * * *"
    assert set(dag.params) >= {"window_end", "force"}
    order = [
        "baseline",
        "evaluate",
        "decide",
        "retrain_requested",
        "trigger_retrain",
        "record_retrain",
    ]
    assert set(dag.task_ids) == set(order)
    assert_chain(dag, order)
    trigger = dag.get_task("trigger_retrain")
    drift_trigger = dagbag.dags["drift_churn"].get_task("trigger_retrain")
    assert trigger.trigger_dag_id == "train_churn" == drift_trigger.trigger_dag_id
    assert trigger.trigger_run_id == drift_trigger.trigger_run_id
    assert trigger.skip_when_already_exists is True


def test_parsing_the_dags_folder_imports_no_heavy_library(tmp_path: Path) -> None:
    code = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(REPO / "dags")!r}, safe_mode=False)
assert not bag.import_errors, bag.import_errors
print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def _write_spec(directory: Path, name: str, mutate) -> Path:
    data = yaml.safe_load((SHIPPED_PIPELINES / "churn.yaml").read_text())
    data["name"] = name
    mutate(data)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["split"].update(test_size=1.5), "split.test_size"),
        (lambda d: d["model"].pop("estimator"), "model.estimator"),
        (lambda d: d["gate"].update(champion_metric="r2"), "gate uses metric 'r2'"),
        (lambda d: d.update(schedul="@daily"), "schedul"),
        (lambda d: d["source"].update(kind="ftp"), "source"),
    ],
    ids=["out-of-range", "missing", "inconsistent", "typo", "unknown-source"],
)
def test_malformed_spec_is_an_import_error_naming_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutate, field: str
) -> None:
    bad = _write_spec(tmp_path, "broken", mutate)

    bag = _dagbag(tmp_path, monkeypatch)

    # Every DAG file reads the specs; each names file and field.
    failing = {Path(f).name for f in bag.import_errors}
    assert failing == {
        "training_pipelines.py",
        "drift_monitors.py",
        "scoring_pipelines.py",
        "performance_monitors.py",
        "rollbacks.py",
    }
    for message in bag.import_errors.values():
        assert str(bad) in message
        assert field in message


def test_every_shipped_spec_suite_and_model_passes_the_full_check() -> None:
    """What `trainyard specs` runs: each suite checked with GX, each model preflighted.

    Too slow for DAG parsing (GX alone takes ~7 s to import), so it runs here, before deploy.
    """
    from dataclasses import replace

    from trainyard.core.settings import Settings
    from trainyard.training.preflight import check_pipelines

    settings = replace(
        Settings.from_env(),
        pipelines_dir=SHIPPED_PIPELINES,
        expectations_dir=REPO / "include" / "expectations",
    )
    checked = {spec.name for spec, _ in check_pipelines(settings)}
    assert checked == {path.stem for path in SHIPPED_PIPELINES.glob("*.yaml")}


def test_two_specs_sharing_a_registered_model_are_an_import_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _write_spec(tmp_path, "first", lambda d: d["model"].update(registered_name="shared"))
    second = _write_spec(tmp_path, "second", lambda d: d["model"].update(registered_name="shared"))

    bag = _dagbag(tmp_path, monkeypatch)

    assert {Path(f).name for f in bag.import_errors} == {
        "training_pipelines.py",
        "drift_monitors.py",
        "scoring_pipelines.py",
        "performance_monitors.py",
        "rollbacks.py",
    }
    for message in bag.import_errors.values():
        assert f"invalid pipeline specs {first} and {second}" in message
        assert "field 'model.registered_name': both register model 'shared'" in message


@pytest.mark.parametrize("dag_id", ["train_churn", "drift_churn", "score_churn"])
@pytest.mark.parametrize("days", [0, -3])
def test_window_days_param_refuses_zero_and_negative(dagbag, dag_id: str, days: int) -> None:
    """Airflow refuses the trigger; the steps refuse it too (window_days must be at least 1)."""
    import copy

    params = copy.deepcopy(dagbag.dags[dag_id].params)
    with pytest.raises(Exception, match="less than the minimum of 1"):
        params["window_days"] = days


def assert_chain(dag, order: list[str]) -> None:
    """Each task in ``order`` runs directly before the next one."""
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).get_direct_relative_ids(upstream=False)

"""A training attempt killed inside its MLflow run: the retry closes what it left open.

A task process killed by SIGKILL (out of memory, a lost worker) cannot end its MLflow run: the
run stays RUNNING and the model it was logging PENDING. Here that state is made with the MLflow
client, exactly as a killed attempt leaves it (the kill itself, of a real Airflow task process,
is tested end to end in tests/e2e/test_airflow_faults.py); the retry's ``train`` closes it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tests.faults import write_static_pipeline
from trainyard import cli
from trainyard.core.lineage import RunContext, git_commit

NAME = "faults_killed_attempt"


def _context(run_id: str) -> RunContext:
    return RunContext(
        dag_id=f"train_{NAME}", run_id=run_id, trigger_reason="test", git_commit=git_commit()
    )


def _attempt_killed_inside_its_run(experiment_id: str, context: RunContext) -> tuple[str, str]:
    """An MLflow run and model as a killed attempt leaves them: RUNNING and PENDING."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.create_run(experiment_id, tags={"pipeline": NAME, **context.tags()})
    model = client.create_logged_model(experiment_id, name="model", source_run_id=run.info.run_id)
    return run.info.run_id, model.model_id


def test_the_retry_closes_the_killed_attempts_run_and_model_and_trains_anew(
    stack: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_spec
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training import steps

    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(write_static_pipeline(tmp_path, NAME)))
    outputs = {}
    for step, argv in (
        ("snapshot", ["ingest", NAME]),
        ("validation", ["validate", NAME, "--snapshot", str(tmp_path / "snapshot.json")]),
    ):
        with (tmp_path / f"{step}.json").open("w") as out, contextlib.redirect_stdout(out):
            assert cli.main(argv) == 0
        outputs[step] = json.loads((tmp_path / f"{step}.json").read_text())
    settings = Settings.from_env()
    spec = load_spec(settings.pipelines_dir / f"{NAME}.yaml")
    experiment_id = mlflow.set_experiment(spec.experiment_name).experiment_id
    retried, other = _context("manual__killed"), _context("manual__another_run")
    killed_run, killed_model = _attempt_killed_inside_its_run(experiment_id, retried)
    other_run, other_model = _attempt_killed_inside_its_run(experiment_id, other)

    result = steps.train(
        spec,
        settings,
        SnapshotRef.model_validate(outputs["snapshot"]),
        ValidationReport.model_validate(outputs["validation"]),
        retried,
    )

    client = MlflowClient()
    assert client.get_run(killed_run).info.status == "KILLED"
    assert client.get_logged_model(killed_model).status == "FAILED"
    assert result.mlflow_run_id != killed_run
    assert client.get_run(result.mlflow_run_id).info.status == "FINISHED"
    # Another Airflow run's open run is not this retry's to close.
    assert client.get_run(other_run).info.status == "RUNNING"
    assert client.get_logged_model(other_model).status == "PENDING"
    running = client.search_runs(
        [experiment_id],
        filter_string="tags.airflow_run_id = 'manual__killed' and attributes.status = 'RUNNING'",
    )
    assert running == []

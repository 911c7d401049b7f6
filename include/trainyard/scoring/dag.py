"""Builds the batch-scoring DAG ``score_<name>`` of each spec with a ``scoring`` section (wiring).

Imported by dags/scoring_pipelines.py at parse time: only the Airflow SDK and trainyard's light
modules; MLflow, pandas, scikit-learn and Great Expectations are imported inside the tasks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, task

from trainyard.airflow.common import dag_arguments, window_params
from trainyard.core.settings import Settings
from trainyard.core.spec import load_all_specs
from trainyard.scoring import tasks

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec


def scoring_doc(spec: PipelineSpec) -> str:
    """The scoring DAG's ``doc_md``."""
    scoring = spec.scoring
    schedule = f"`{scoring.schedule}`" if scoring.schedule else "none (manual runs only)"
    return f"""\
### Batch scoring of `{spec.name}`

Scores the newest partitions with the **champion** of `{spec.registered_model_name}` and writes
the predictions to the prediction log.

**Steps:** `champion` (resolved once, at the start: every day of the run uses that version;
*no champion: the run is skipped, and its record says so*) → `batch` (the partitions, the target
may be absent; a missing or mistyped feature **fails the run** naming the column) → `validate`
(the GX suite `{spec.validation.suite}` minus its expectations on `{spec.schema_.target}`: a
broken batch **fails as a data-quality failure, nothing is written**) → `score`.

- **Schedule:** {schedule}; {scoring.days} day(s) per run, ending
  {scoring.end_offset_days} day(s) before the run day.
- **Outputs:** `predictions/{spec.name}/batch/date=YYYY-MM-DD/v<version>.parquet`
  (`row_id` = `{spec.schema_.id_column}`, `prediction`, `proba_<class>`, `model_version`,
  `run_id`, ...) and the day's `manifest.json` naming the current object. An object that exists
  is never rewritten (a rerun with the same champion writes nothing); a new champion writes a
  new object and moves the manifest. Each run's record:
  `scoring/{spec.name}/runs/<run_id>.json`.

**Manual runs** (Trigger DAG w/ config): `window_end` (YYYY-MM-DD), `window_days`.

**Why four tasks:** each step stays visible, retried and linked on its own. Measured with
`dag.test()` on a 2-core machine (load ~2): every task after the first costs Airflow 0.03-0.1 s;
the ~2.5 s of the first task is Airflow starting its execution API, paid whatever the number of
tasks. Merging them would save well under a second and hide which step failed. `score` reads the
snapshot in pieces of the id and the champion's features, and derives the class from
`predict_proba` (no second pass through the model).
"""


def build_scoring_dag(spec: PipelineSpec) -> DAG:
    """The batch-scoring DAG of one pipeline.

    Args:
        spec: A spec with a ``scoring`` section.

    Returns:
        The DAG ``score_<name>``.
    """
    with DAG(
        dag_id=spec.scoring_dag_id,
        description=f"Batch scoring of {spec.name} with its champion",
        schedule=spec.scoring.schedule,
        **dag_arguments(spec, execution_timeout=timedelta(hours=2)),
        doc_md=scoring_doc(spec),
        tags=["trainyard", "scoring", *spec.tags],
        params=window_params(
            spec.scoring.days, "Last partition date to score (default: run day minus the offset)."
        ),
    ) as dag:

        @task(task_id="champion")
        def champion(**context: Any) -> dict:
            return tasks.champion(spec, context)

        @task(task_id="batch")
        def batch(champion: dict, **context: Any) -> list[dict]:
            return tasks.batch(spec, champion, context)

        @task(task_id="validate")
        def validate(champion: dict, snapshots: list[dict], **context: Any) -> list[dict]:
            return tasks.validate(spec, champion, snapshots, context)

        @task(task_id="score")
        def score(champion: dict, snapshots: list[dict], **context: Any) -> dict:
            return tasks.score(spec, champion, snapshots, context)

        ref = champion()
        snapshots = batch(ref)
        validate(ref, snapshots) >> score(ref, snapshots)
    return dag


def build_scoring_dags(settings: Settings | None = None) -> list[DAG]:
    """One scoring DAG per spec with a ``scoring`` section.

    Raises:
        trainyard.core.spec.SpecError: Naming every invalid spec file and field.
    """
    settings = settings or Settings.from_env()
    specs = load_all_specs(settings.pipelines_dir)
    return [build_scoring_dag(spec) for spec in specs if spec.scoring is not None]

"""Builds the manual DAG ``rollback_<name>`` of each pipeline spec (wiring only).

Imported by dags/rollbacks.py at parse time: only the Airflow SDK and trainyard's light modules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param, task

from trainyard.airflow.common import dag_arguments, record_links
from trainyard.core.settings import Settings
from trainyard.core.spec import load_all_specs
from trainyard.governance import tasks

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec


class AnswerRecordingApproval(ApprovalOperator):
    """Airflow's ApprovalOperator that also keeps the answer as XCom ``answer``, and links to
    its Required Action.

    On *Reject* the stock operator skips its downstream tasks by raising, so its return value
    (who answered, what, with which comment) never reaches XCom; the ``settle`` task needs it to
    record the rejection.
    """

    def execute(self, context: Any) -> Any:
        """Record the *Required action* link (it survives the deferral), then ask."""
        from trainyard.ui.links import LinkKind, task_required_action_ref

        ti = context["ti"]
        record_links(
            {LinkKind.REQUIRED_ACTION: task_required_action_ref(ti.dag_id, ti.run_id, ti.task_id)}
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Push the answer, then let the ApprovalOperator approve or skip downstream."""
        if "error" not in event:
            context["ti"].xcom_push(
                key="answer",
                value={
                    "chosen_options": event["chosen_options"],
                    "params_input": event.get("params_input") or {},
                    "responded_by_user": event.get("responded_by_user"),
                },
            )
        return super().execute_complete(context, event)


def rollback_doc(spec: PipelineSpec) -> str:
    """The DAG's ``doc_md``."""
    model = spec.registered_model_name
    return f"""\
### Rollback of `{model}` (pipeline `{spec.name}`)

Manual only (Trigger DAG w/ config). Moves alias `champion` of `{model}` back to `to_version`
(default: the version holding `previous`); the replaced champion becomes `previous`, so a second
rollback undoes the first. The target model is loaded first: a missing or broken artifact refuses
the rollback. Refused too: the current champion, a version of another model, an empty `reason`.
Who, when, why and from → to are recorded in the audit trail (`trainyard history {spec.name}`)
and on both versions' tags. The CLI does the same: `trainyard rollback {spec.name} --to N
--reason "..."`.
"""


def build_rollback_dag(spec: PipelineSpec) -> DAG:
    """The manual rollback DAG of one pipeline's registered model.

    Returns:
        The DAG ``rollback_<name>``.
    """
    arguments = dag_arguments(spec, execution_timeout=timedelta(minutes=30))
    with DAG(
        dag_id=spec.rollback_dag_id,
        description=f"Roll {spec.registered_model_name}@champion back to an earlier version",
        schedule=None,
        **arguments,
        doc_md=rollback_doc(spec),
        tags=["trainyard", "governance", *spec.tags],
        params={
            "to_version": Param(
                "",
                type="string",
                description="Version to make champion again (N); empty: the one holding "
                "'previous'.",
            ),
            "reason": Param(
                "",
                type="string",
                minLength=1,
                description="Why (required); kept in the audit trail.",
            ),
        },
    ) as dag:

        @task(task_id="rollback")
        def roll_back(**context: Any) -> dict:
            return tasks.rollback(spec, context)

        roll_back()
    return dag


def build_rollback_dags(settings: Settings | None = None) -> list[DAG]:
    """One rollback DAG per spec in the pipelines directory.

    Raises:
        trainyard.core.spec.SpecError: Naming every invalid spec file and field.
    """
    settings = settings or Settings.from_env()
    return [build_rollback_dag(spec) for spec in load_all_specs(settings.pipelines_dir)]

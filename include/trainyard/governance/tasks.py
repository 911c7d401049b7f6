"""Airflow adapters of the governance steps (rollback): Params in, one step, a small dict out.

Heavy libraries are imported inside the steps, never here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainyard.airflow.common import actor, airflow_failures
from trainyard.core.settings import Settings

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


def rollback(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Roll ``champion`` back to the ``to_version`` Param (default: ``previous``), for ``reason``.

    A refusal (no reason, the current champion, another model's version, a version that does not
    load) fails the task at once, without retries, naming why; nothing moves.
    """
    from trainyard.governance.audit import Cause
    from trainyard.governance.rollback import rollback as roll_back

    params = context["params"]
    dag_run = context["dag_run"]
    cause = Cause(
        actor=actor(context),
        reason=(params.get("reason") or "").strip(),
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
    )
    with airflow_failures(spec, "the rollback"):
        event = roll_back(
            Settings.from_env(), spec.registered_model_name, params.get("to_version"), cause
        )
    log.info("%s", event.describe())
    return event.model_dump(mode="json")

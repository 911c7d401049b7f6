"""Approval before promotion, answered by a person through Airflow's REST API.

``train_churn_approval`` (tests/pipelines) has ``promotion: {mode: approval}``. Each case runs it
with ``dag.test()`` in this process; Airflow 3.3 parks the approval task in ``awaiting_input``
and ``dag.test()`` waits until the answer is in the metadata DB. An ``airflow api-server`` on
the same metadata DB answers it: a helper thread logs in as user ``reviewer`` and PATCHes the
Required Action, as the UI does. The timeout case runs the scheduler's own timeout sweep
(``SchedulerJobRunner.check_awaiting_input_timeouts``) once the deadline has passed, because no
scheduler runs beside ``dag.test()``.

Each case trains on its own window (a new version), so the cases pass in any order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support import (
    SESSION_DIR,
    AlertInbox,
    champion_of,
    evidence_link,
    run_dag_in_process,
    spec_named,
)
from trainyard_dev.airflow_api import AirflowApi
from trainyard_dev.services import ServiceRunner, free_ports, http_ok, wait_for

pytestmark = pytest.mark.e2e

DAG_ID = "train_churn_approval"
MODEL = "churn_approval"
REVIEWER = "reviewer"
FIRST_DAY = date(2026, 3, 1)


@dataclass
class ApiServer(ServiceRunner):
    """``airflow api-server`` on the session's metadata DB, with one user, ``reviewer``."""

    state_dir: Path
    port: int
    password: str = "reviewer-password"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        home = Path(SESSION_DIR / "airflow")
        passwords = self.state_dir / "passwords.json"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({REVIEWER: self.password}))
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{REVIEWER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__PORT": str(self.port),
        }
        airflow = str(Path(self.service_env({})["PATH"].split(":")[0]) / "airflow")
        self._spawn("api-server", [airflow, "api-server", "--port", str(self.port)], env)
        wait_for(
            lambda: http_ok(f"{self.url}/api/v2/monitor/health"),
            f"Airflow API server on {self.url}",
            300,
            self.log_path("api-server"),
        )


@pytest.fixture(scope="module")
def api(stack: Any, airflow_db: None) -> Iterator[AirflowApi]:
    server = ApiServer(state_dir=SESSION_DIR / "approval-api", port=free_ports(1)[0])
    try:
        server.start()
        yield AirflowApi(server.url, REVIEWER, server.password)
    finally:
        server.stop("api-server")


@pytest.fixture(scope="module")
def churn_days(settings: Any) -> None:
    from trainyard_dev.churn import land_days

    land_days(settings, FIRST_DAY - timedelta(days=30), FIRST_DAY + timedelta(days=10), 600)


def _answer_when_asked(api: AirflowApi, respond: Callable[[dict], None]) -> threading.Thread:
    """Wait (in a thread) for this DAG's open Required Action, then call ``respond`` with it."""
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            deadline = time.monotonic() + 1200
            while time.monotonic() < deadline:
                page = api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails")
                # Answer once the task waits: a response that lands while it is still parking is
                # only picked up by the scheduler's timeout sweep, which dag.test() does not run.
                waiting = [
                    d
                    for d in page["hitl_details"]
                    if not d["response_received"]
                    and d["task_instance"]["state"] == "awaiting_input"
                ]
                if waiting:
                    respond(waiting[0])
                    return
                time.sleep(2)
            raise TimeoutError("no Required Action appeared")
        except BaseException as error:  # noqa: BLE001 (reported by the test thread)
            errors.append(error)

    thread = threading.Thread(target=watch, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def _respond(api: AirflowApi, option: str, comment: str) -> Callable[[dict], None]:
    def respond(detail: dict) -> None:
        ti = detail["task_instance"]
        api.request(
            "PATCH",
            f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/"
            f"{ti['task_id']}/{ti['map_index']}/hitlDetails",
            {"chosen_options": [option], "params_input": {"comment": comment}},
        )

    return respond


def _run(window_end: date, api: AirflowApi, respond: Callable[[dict], None]) -> Any:
    watcher = _answer_when_asked(api, respond)
    # The tests share one registered model and run in any order, so a later test may train on an
    # older window than the champion an earlier one left; approval, not window order, is tested.
    conf = {"window_end": window_end.isoformat(), "reason": "test", "allow_older_window": True}
    run = run_dag_in_process(DAG_ID, conf)
    watcher.join(timeout=60)
    assert not watcher.errors, watcher.errors  # type: ignore[attr-defined]
    return run


def _events(settings: Any, run_id: str) -> list[Any]:
    from trainyard.governance import audit

    return [e for e in audit.read_events(settings, MODEL) if e.cause.run_id == run_id]


def _champion() -> str | None:
    from trainyard.core.tracking import champion_version

    found = champion_version(MODEL)
    return found.version if found else None


def _card(settings, version: str) -> str:
    """The version's card on S3, after checking MLflow's description carries the same text."""
    from mlflow import MlflowClient

    from trainyard.governance.model_card import read_card

    card = read_card(settings, MODEL, version)
    assert card is not None
    assert MlflowClient().get_model_version(MODEL, version).description == card
    return card


def test_approved_challenger_becomes_champion_and_the_trail_names_the_reviewer(
    settings, api, churn_days
) -> None:
    before = _champion()
    run = _run(FIRST_DAY, api, _respond(api, "Approve", "metrics hold up"))

    assert run.state == "success", run.task_states
    version = run.xcoms["register"]["version"]
    assert run.xcoms["register"]["alias"] == "challenger"
    assert champion_of(MODEL).version == version
    submitted, approved = _events(settings, run.run_id)
    assert (submitted.action, submitted.to_version) == ("submit", version)
    assert (approved.action, approved.from_version, approved.to_version) == (
        "approve", before, version,
    )  # fmt: skip
    assert approved.cause.actor == REVIEWER
    assert approved.cause.reason == "metrics hold up"
    assert "challenger" in approved.aliases_removed
    assert run.xcoms["report"]["status"] == "registered"
    card = _card(settings, version)
    assert card.endswith(f"## Approval\napproved by {REVIEWER}: metrics hold up\n")
    assert "awaiting approval" not in card


def test_request_shows_gate_checks_metrics_and_links_and_is_alerted(
    settings, api, churn_days, monkeypatch
) -> None:
    seen: dict[str, Any] = {}

    def look_then_reject(detail: dict) -> None:
        from trainyard.core.tracking import alias_version
        from trainyard.ui.models_page import pending_from_version

        seen.update(detail)
        # What the Models page shows while the person has not answered yet.
        seen["pending"] = pending_from_version(alias_version(MODEL, "challenger"))
        _respond(api, "Reject", "just looking")(detail)

    inbox = AlertInbox()
    try:
        for name, value in inbox.environment().items():
            monkeypatch.setenv(name, value)
        run = _run(FIRST_DAY + timedelta(days=3), api, look_then_reject)
    finally:
        inbox.close()
    assert run.state == "success", run.task_states
    (alert,) = inbox.alerts("approval_waiting", run.run_id)
    (email,), (_,) = inbox.delivered(alert)
    assert alert["links"]["Required Actions"] == "http://airflow.example:8080/required_actions"
    assert "Required Actions: http://airflow.example:8080/required_actions" in email.get_content()
    assert seen["subject"] in alert["subject"]
    version = run.xcoms["register"]["version"]
    assert seen["subject"].startswith(f"Promote {MODEL} v{version} to champion?")
    body = seen["body"]
    assert "**Gate checks**" in body and "[ok  ]" in body
    roc_auc = run.xcoms["evaluate"]["challenger"]["roc_auc"]
    assert f"| roc_auc | {roc_auc:.4f} |" in body
    assert "[MLflow run](http" in body and "[validation result](http" in body
    assert seen["options"] == ["Approve", "Reject"]
    # The approval task links to its Required Action, where the Models page's pending approval
    # (the version waiting as challenger) links too.
    recorded, url = evidence_link("Required action", DAG_ID, run.run_id, "approval")
    run_path = f"/dags/{DAG_ID}/runs/{quote(run.run_id, safe='')}"
    assert recorded == f"{run_path}/tasks/approval/required_actions"
    assert url == recorded  # on the Airflow UI's own site ([api] base_url unset)
    assert seen["pending"].version == version
    assert seen["pending"].required_action_ref == recorded


def test_rejected_challenger_leaves_the_champion_and_keeps_the_reviewers_words(
    settings, api, churn_days
) -> None:
    before = _champion()
    run = _run(FIRST_DAY + timedelta(days=6), api, _respond(api, "Reject", "too few rows in May"))

    assert run.state == "success", run.task_states
    assert run.task_states["promote"] == "skipped"
    assert _champion() == before
    version = run.xcoms["register"]["version"]
    _, rejected = _events(settings, run.run_id)
    assert (rejected.action, rejected.to_version) == ("reject", version)
    assert (rejected.cause.actor, rejected.cause.reason) == (REVIEWER, "too few rows in May")
    assert rejected.aliases_set == {}
    from trainyard.governance.aliases import current_aliases

    assert current_aliases(MODEL).get("challenger") != version
    assert run.xcoms["report"]["status"] == "not_approved"
    assert _card(settings, version).endswith(
        f"## Approval\nrejected by {REVIEWER}: too few rows in May\n"
    )


def test_unanswered_request_times_out_to_the_specs_choice(settings, api, churn_days) -> None:
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    timeout = spec_named("churn_approval").promotion.timeout

    def sweep_after_deadline(detail: dict) -> None:
        time.sleep(timeout.total_seconds() + 2)
        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()

    before = _champion()
    run = _run(FIRST_DAY + timedelta(days=9), api, sweep_after_deadline)

    assert run.state == "success", run.task_states
    version = run.xcoms["register"]["version"]
    # churn_approval.yaml says on_timeout: approve.
    assert champion_of(MODEL).version == version
    _, timed_out = _events(settings, run.run_id)
    assert (timed_out.action, timed_out.from_version, timed_out.to_version) == (
        "timeout", before, version,
    )  # fmt: skip
    assert timed_out.cause.actor == "timeout"
    assert "on_timeout: approve" in timed_out.cause.reason

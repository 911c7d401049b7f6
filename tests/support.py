"""Helpers shared by the tests (not fixtures: those live in the conftest files).

Paths of the repository and of this test session, spec loaders, the lineage every registered
model version must carry, and ways to run DAGs in-process (``dag.test()``, or an existing run)
and read what they returned. Airflow and MLflow are imported inside the functions: Airflow reads
its configuration when first imported, which ``tests/conftest.py`` sets up in
``pytest_configure``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: This test session's private folder (AIRFLOW_HOME, pipelines, services' state); the session
#: hooks in tests/conftest.py fill it and delete it at the end.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="trainyard-tests-"))
#: The session's pipelines folder: the shipped specs plus the test-only ones (tests/pipelines).
PIPELINES_DIR = SESSION_DIR / "pipelines"

#: Tags every registered model version must carry (its lineage).
LINEAGE_TAGS = {
    "snapshot_uri",
    "snapshot_sha256",
    "validation_result_uri",
    "airflow_dag_id",
    "airflow_run_id",
    "trigger_reason",
    "git_commit",
    "code_sha256",
    "spec_sha256",
    "window_start",
    "window_end",
    "mlflow_run_id",
    "fingerprint",
}


def require_local_servers(stack: Any) -> None:
    """Skip the test (fail it under ``CI=true``) unless the local PostgreSQL and Redis a
    production-shape stack needs, and psql, are there."""
    import os
    import shutil

    import pytest

    problems = stack.check_servers()
    if shutil.which("psql") is None:
        problems.append("psql (the PostgreSQL client) is not on PATH")
    if not problems:
        return
    message = "the production-shape test needs local PostgreSQL and Redis: " + "; ".join(problems)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: this test must run, not skip)")
    pytest.skip(message)


def s3_client_of(stack: Any) -> Any:
    """A boto3 S3 client of a stack's own S3 (its endpoint and keys, not the environment's)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        aws_access_key_id=stack.secrets.s3_access_key,
        aws_secret_access_key=stack.secrets.s3_secret_key,
        region_name="us-east-1",
    )


def spec_named(name: str) -> Any:
    """A spec from the session's pipelines folder."""
    from trainyard.core.spec import load_spec

    return load_spec(PIPELINES_DIR / f"{name}.yaml")


def repo_spec(name: str) -> Any:
    """A spec as shipped in include/pipelines."""
    from trainyard.core.spec import load_spec

    return load_spec(REPO / "include" / "pipelines" / f"{name}.yaml")


def loans_frame(rows: int, start: int = 0) -> Any:
    """Loan applications as a team would export them: ids with leading zeros, missing incomes
    and regions, a text target (``approved`` / ``declined``) that the features predict."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(start)
    income = rng.normal(50_000, 15_000, rows).round(0)
    amount = rng.normal(20_000, 8_000, rows).round(0)
    score = income - amount * 1.5 + rng.normal(0, 8000, rows)
    frame = pd.DataFrame(
        {
            "application_id": [f"{start + i:05d}" for i in range(rows)],
            "income": income,
            "loan_amount": amount,
            "age": rng.integers(18, 80, rows),
            "employment": rng.choice(["salaried", "self-employed", "none"], rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "decision": np.where(score > 15000, "approved", "declined"),
        }
    )
    frame.loc[frame.index[::9], "income"] = None
    frame.loc[frame.index[::13], "region"] = None
    return frame


# ---- a warehouse on the local PostgreSQL ---------------------------------------------------------

#: A PostgreSQL server on which the tests may create databases (trust auth on this machine).
POSTGRES_SERVER = os.environ.get(
    "TRAINYARD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: The table the SQL example spec (docs/examples/pipelines/churn_sql.yaml) queries.
CUSTOMER_EVENTS_TABLE = (
    "CREATE TABLE customer_events (customer_id text, event_time timestamptz, tenure_months "
    "integer, monthly_charges double precision, total_charges double precision, support_calls "
    "integer, data_usage_gb double precision, days_since_last_login double precision, contract "
    "text, payment_method text, internet_service text, region text, churned integer)"
)


@contextmanager
def warehouse_database(prefix: str) -> Iterator[str]:
    """A new database on the local PostgreSQL holding an empty ``customer_events``; its URL.

    Dropped afterwards. Skips the test when the server cannot be reached (fails under
    ``CI=true``: there the test must run).
    """
    import uuid

    import pytest
    import sqlalchemy as sa

    server = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with server.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        message = f"this test needs PostgreSQL at {POSTGRES_SERVER}: {error.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: this test must run, not skip)")
        pytest.skip(message)
    url = sa.engine.make_url(POSTGRES_SERVER).set(database=name)
    try:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text(CUSTOMER_EVENTS_TABLE))
        engine.dispose()
        yield url.render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def customer_events(day: date, rows: int, knobs: Any = None) -> Any:
    """One day of churn rows as ``customer_events`` holds them: ``event_time`` spread evenly
    over the day, so a window's bounds fall between rows and every row is inside its day."""
    from datetime import datetime, timedelta

    from trainyard_dev.churn import generate_day

    frame = generate_day(day, rows, knobs).rename(columns={"event_date": "event_time"})
    midnight = datetime(day.year, day.month, day.day)
    frame["event_time"] = [midnight + timedelta(seconds=86_400 * i // rows) for i in range(rows)]
    return frame


def insert_rows(url: str, frame: Any) -> None:
    """Append rows to ``customer_events`` of the database at ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        frame.to_sql("customer_events", engine, if_exists="append", index=False)
    finally:
        engine.dispose()


# ---- DAG runs ---------------------------------------------------------------------------------


@dataclass
class DagRunResult:
    """A finished test run: its state, each task's state and each task's return value."""

    run_id: str
    state: str
    task_states: dict[str, str | None]
    xcoms: dict[str, Any]


def return_values(dag_id: str, run_id: str) -> dict[str, Any]:
    """Each task's return value (XCom ``return_value``) in one DAG run, by task id."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.key == "return_value",
        )
        return {row.task_id: row.value for row in rows}


def evidence_link(kind: str, dag_id: str, run_id: str, task_id: str) -> tuple[str | None, str]:
    """What a task recorded for the link ``kind`` (XCom ``trainyard_links``), and the URL the
    trainyard_ui plugin's button of that kind opens for it ("" where the task shows none)."""
    import importlib

    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from trainyard.ui.links import LINKS_XCOM_KEY

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=LINKS_XCOM_KEY)
            .one_or_none()
        )
        value = row.value if row is not None else None
    recorded = (json.loads(value) if isinstance(value, str) else value or {}).get(kind)
    if str(REPO / "plugins") not in sys.path:
        sys.path.append(str(REPO / "plugins"))
    plugin = importlib.import_module("trainyard_ui").TrainyardUiPlugin
    (link,) = [link for link in plugin.global_operator_extra_links if link.name == kind]
    key = TaskInstanceKey(dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=1)
    return recorded, link.get_link(None, ti_key=key)


def _result(dag_id: str, run_id: str, state: Any, states: dict[str, Any]) -> DagRunResult:
    return DagRunResult(
        run_id=run_id,
        state=str(state),
        task_states={k: (str(v) if v is not None else None) for k, v in states.items()},
        xcoms=return_values(dag_id, run_id),
    )


def dag_from_folder(dag_id: str) -> Any:
    """A DAG parsed from the DAGs folder, which must import without errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    assert dag_id in bag.dags, f"{dag_id} not in the DagBag: {sorted(bag.dag_ids)}"
    return bag.dags[dag_id]


def run_dag_in_process(dag_id: str, conf: dict[str, Any]) -> DagRunResult:
    """Run a DAG from the DAGs folder with ``dag.test()`` (a new run) and return what happened.

    Needs the session's services and metadata DB (the ``run_dag`` fixture provides both).
    """
    dag_run = dag_from_folder(dag_id).test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return _result(dag_id, dag_run.run_id, dag_run.state, states)


def execute_existing_run(dag_id: str, run_id: str) -> DagRunResult:
    """Execute a DAG run that already exists and is queued (e.g. one a DAG triggered), in-process.

    ``dag.test()`` always creates a new run, so it cannot execute *this* run with *its* id and
    conf. This drives the existing run with the loop ``dag.test()`` uses (update the run's state,
    schedule ready tasks, run each with ``dag.test``'s in-process task runner), i.e. what the
    scheduler would do once it picked the queued run.
    """
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    dag = dag_from_folder(dag_id)
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        assert run is not None and run.state == DagRunState.QUEUED, run
        run.dag = scheduler_dag
        run.state = DagRunState.RUNNING
        run.start_date = timezone.utcnow()
        session.commit()
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in run.get_task_instances(session=session):
                if ti.state == TaskInstanceState.SCHEDULED:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id])
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        state = run.state
    return _result(dag_id, run_id, state, states)


def queue_dag_run(dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
    """Create a queued run of a DAG already in the metadata DB, as a manual trigger would."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    trigger_dag(dag_id, run_id=run_id, conf=conf or {}, triggered_by=DagRunTriggeredByType.TEST)


def delete_dag_run(dag_id: str, run_id: str) -> None:
    """Delete a DAG run and its task instances from the metadata DB (if it is there)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is not None:
            session.delete(run)


def dag_runs(dag_id: str, *, states: tuple[str, ...] | None = None) -> dict[str, str]:
    """Run id → state of a DAG's runs in the metadata DB (optionally only those states)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id)
    if states is not None:
        query = query.where(DagRun.state.in_(states))
    with create_session() as session:
        return {run_id: str(state) for run_id, state in session.execute(query)}


# ---- the MLflow registry ----------------------------------------------------------------------


def model_versions(name: str) -> set[str]:
    """The versions of a registered model ({} if it is not registered)."""
    from mlflow import MlflowClient

    return {v.version for v in MlflowClient().search_model_versions(f"name = '{name}'")}


def champion_of(name: str) -> Any:
    """The model version holding the ``champion`` alias."""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version_by_alias(name, "champion")


def make_champion(name: str, version: str) -> Any:
    """Point the ``champion`` alias at a version (test set-up), and return that version."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, "champion", version)
    return champion_of(name)


def serving_pipelines(folder: Path, pipeline: str, untrained: str) -> dict[str, Any]:
    """Two churn-like serving pipelines in ``folder``; ``pipeline`` gets two versions (v1 champion).

    The cheapest registry a model server can follow: small fits registered without Airflow
    (``trainyard_dev.churn.register_model``); ``untrained`` never gets a champion.

    Args:
        folder: Where the pipeline specs are written.
        pipeline: The pipeline (and registered model) with two versions.
        untrained: A pipeline whose registered model has no version.

    Returns:
        ``folder``, ``spec`` (of ``pipeline``), ``untrained_spec``, and versions ``v1``, ``v2``.
    """
    import yaml
    from mlflow import MlflowClient

    from trainyard.core.spec import load_spec
    from trainyard.core.tracking import CHAMPION
    from trainyard_dev.churn import register_model

    document = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    document["name"] = pipeline
    document["model"]["registered_name"] = pipeline
    document["model"]["params"]["max_iter"] = 30
    (folder / f"{pipeline}.yaml").write_text(yaml.safe_dump(document))
    document.update(name=untrained, model={**document["model"], "registered_name": untrained})
    (folder / f"{untrained}.yaml").write_text(yaml.safe_dump(document))
    spec = load_spec(folder / f"{pipeline}.yaml")
    v1 = register_model(spec, [date(2026, 1, d) for d in (1, 2, 3)])
    v2 = register_model(spec, [date(2026, 2, d) for d in (1, 2, 3)])
    MlflowClient().set_registered_model_alias(pipeline, CHAMPION, v1)
    return {
        "folder": folder,
        "spec": spec,
        "untrained_spec": load_spec(folder / f"{untrained}.yaml"),
        "v1": v1,
        "v2": v2,
    }


def churn_rows(count: int, day: date = date(2026, 3, 1)) -> Any:
    """``count`` generated churn rows of ``day`` (ids, features, label)."""
    from trainyard_dev.churn import generate_day

    return generate_day(day, count)


def feature_records(frame: Any) -> list[dict[str, Any]]:
    """A churn frame's rows as JSON request records (the id kept, the date and label dropped)."""
    import json

    return json.loads(frame.drop(columns=["event_date", "churned"]).to_json(orient="records"))


def rerun_dag_run(dag_id: str, run_id: str) -> DagRunResult:
    """Clear every task of a finished run and execute the same run again (a person's *Clear*)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        clear_task_instances(run.get_task_instances(session=session), session)
    return execute_existing_run(dag_id, run_id)


def register_tiny_model(model_name: str) -> str:
    """Log a tiny fitted model and register it as a new version; return the version."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(len(model_name))
    x = rng.normal(size=(40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    mlflow.set_experiment("governance-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"], registered_model_name=model_name
        )
    return str(info.registered_model_version)


# ---- alerts -----------------------------------------------------------------------------------


class AlertInbox:
    """A real SMTP server (aiosmtpd) and a real HTTP receiver (http.server), both in threads on
    free ports, keeping everything the alert channels deliver.

    ``environment()`` is what points trainyard's alerts at them.
    """

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from aiosmtpd.controller import Controller

        self.emails: list[Any] = []
        self.posts: list[tuple[str, dict[str, Any]]] = []
        inbox = self

        class Mailbox:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                from email import message_from_bytes, policy

                inbox.emails.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import json

                body = self.rfile.read(int(self.headers["Content-Length"]))
                inbox.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        from trainyard_dev.services import free_ports

        smtp_port, self.closed_port = free_ports(2)
        self.smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
        self.smtp.start()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def environment(self) -> dict[str, str]:
        """The alert settings that deliver to this inbox: e-mail, Slack and JSON webhooks."""
        http = f"http://127.0.0.1:{self.http.server_address[1]}"
        return {
            "TRAINYARD_ALERT_SMTP_HOST": "127.0.0.1",
            "TRAINYARD_ALERT_SMTP_PORT": str(self.smtp.port),
            "TRAINYARD_ALERT_EMAIL_TO": "ops@example.com",
            "TRAINYARD_ALERT_SLACK_WEBHOOK_URL": f"{http}/slack",
            "TRAINYARD_ALERT_WEBHOOK_URL": f"{http}/hook",
            "TRAINYARD_AIRFLOW_UI_URL": "http://airflow.example:8080",
        }

    def alerts(self, kind: str, run_id: str) -> list[dict[str, Any]]:
        """The JSON-webhook alerts of ``kind`` about a DAG run (its id or its Airflow link)."""
        from urllib.parse import unquote

        return [
            body
            for path, body in self.posts
            if path == "/hook"
            and body["kind"] == kind
            and (
                run_id in body["identity"]
                or unquote(body["links"].get("Airflow run", "")).endswith(f"/runs/{run_id}")
            )
        ]

    def delivered(self, alert: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        """The e-mails and Slack posts of the same event as a JSON-webhook ``alert``."""
        emails = [m for m in self.emails if m["X-Trainyard-Event"] == alert["event_id"]]
        slack = [
            body
            for path, body in self.posts
            if path == "/slack" and body["text"].startswith(f"*{alert['subject']}*")
        ]
        return emails, slack

    def close(self) -> None:
        self.smtp.stop()
        self.http.shutdown()
        self.http.server_close()

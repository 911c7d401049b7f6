"""End to end: the production shape (docker-compose.yaml's services, run without Docker).

Airflow's api-server, scheduler, dag-processor, triggerer and a Celery worker run as separate
processes on a PostgreSQL database created for this session and a Redis database index of its
own; MLflow runs on PostgreSQL with basic auth; SeaweedFS serves S3. The training DAG is triggered
through REST API v2 with token auth. The tests run in any order, except the teardown test, which
is marked to run last in the module: it tears everything down and checks that the databases are
gone.

Needs the local PostgreSQL (127.0.0.1:5432, a role that may create roles and databases) and
Redis (127.0.0.1:6379); see TRAINYARD_POSTGRES_URL / TRAINYARD_REDIS_URL. Without them the module
is skipped, except with CI=true, where it fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import LINEAGE_TAGS, REPO, require_local_servers, s3_client_of

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WINDOW_END = date(2026, 6, 30)
REASON = "test: production shape"
CODE_VERSION = "image-build-of-the-prod-shape-test"  # what GIT_COMMIT sets in the image


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The production shape on free ports; torn down (databases dropped) after the module."""
    from trainyard_dev.prodstack.stack import ProdStack
    from trainyard_dev.services import Ports

    stack = ProdStack(
        state_dir=tmp_path_factory.mktemp("prodstack"),
        ports=Ports.free(),
        environ={},
        pipelines_dir=REPO / "include" / "pipelines",
        airflow_overrides={
            # No scheduled runs (e.g. the nightly run a DAG gets when unpaused): only this test's.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # The code version, set by the deployment as the Docker image does (GIT_COMMIT).
            "TRAINYARD_GIT_COMMIT": CODE_VERSION,
        },
    )
    require_local_servers(stack)
    try:
        stack.up()
        with pytest.MonkeyPatch.context() as patch:
            for key, value in stack.client_env().items():
                patch.setenv(key, value)
            yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def training_run(prod: Any) -> dict[str, Any]:
    """Churn data for June 2026 landed on S3, then one run of train_churn through the REST API."""
    from trainyard.core.settings import Settings
    from trainyard_dev.churn import land_days

    # The settings carry this stack's endpoint and keys (the prod fixture exported them); the
    # S3 client is built from them, whatever S3 an earlier module used in this process.
    land_days(Settings.from_env(), date(2026, 5, 28), WINDOW_END, rows_per_day=1000)
    api = prod.api()
    api.wait_for_dag("train_churn")
    api.set_paused("train_churn", False)
    run = api.trigger("train_churn", conf={"window_end": WINDOW_END.isoformat(), "reason": REASON})
    finished = api.wait_for_run("train_churn", run["dag_run_id"], timeout=900)
    tasks = api.request(
        "GET", f"/api/v2/dags/train_churn/dagRuns/{run['dag_run_id']}/taskInstances"
    )["task_instances"]
    return {"run": finished, "tasks": {ti["task_id"]: ti for ti in tasks}}


def _query(prod: Any, purpose: str, sql: str) -> list[tuple]:
    import psycopg2

    database = prod.databases[purpose]
    with (
        psycopg2.connect(prod.postgres.url, dbname=database) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
        return cursor.fetchall()


def test_each_airflow_component_is_a_process_on_postgres_and_redis(prod) -> None:
    import redis

    pids = prod.status()
    assert all(pids.values()), pids
    assert len(set(pids.values())) == len(pids)
    assert set(pids) >= {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker-1",
        "mlflow",
        "s3",
    }
    with urllib.request.urlopen(f"{prod.airflow_url}/api/v2/monitor/health") as response:
        health = json.loads(response.read())
    assert {
        health[c]["status"] for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == {"healthy"}
    jobs = dict(_query(prod, "airflow", "SELECT job_type, count(*) FROM job GROUP BY job_type"))
    assert {"SchedulerJob", "TriggererJob", "DagProcessorJob"} <= set(jobs)
    broker = redis.Redis.from_url(prod.broker_url)
    assert {b"_kombu.binding.default", b"_kombu.binding.training"} <= set(broker.keys("_kombu.*"))


def test_rest_api_refuses_requests_without_a_token(prod) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{prod.airflow_url}/api/v2/dags")
    assert refused.value.code == 401


def test_training_run_succeeds_through_celery_with_training_queue(prod, training_run) -> None:
    run, tasks = training_run["run"], training_run["tasks"]

    assert run["state"] == "success", {t: ti["state"] for t, ti in tasks.items()}
    assert {ti["state"] for ti in tasks.values()} == {"success"}
    assert tasks["train"]["queue"] == "training"
    assert {ti["queue"] for task, ti in tasks.items() if task != "train"} == {"default"}
    # Every task went through Celery: one result per task in the Postgres result backend (the
    # worker writes the last one just after the run is marked successful, hence the wait).
    sql = "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'"
    deadline = time.monotonic() + 60
    while _query(prod, "airflow", sql)[0][0] < len(tasks) and time.monotonic() < deadline:
        time.sleep(1)
    assert _query(prod, "airflow", sql)[0][0] == len(tasks)


def test_champion_and_lineage_through_authenticated_mlflow(prod, training_run) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=prod.mlflow_url)
    champion = client.get_model_version_by_alias("churn", "champion")

    assert champion.version == "1"
    assert set(champion.tags) >= LINEAGE_TAGS, LINEAGE_TAGS - set(champion.tags)
    assert champion.tags["airflow_dag_id"] == "train_churn"
    assert champion.tags["airflow_run_id"] == training_run["run"]["dag_run_id"]
    assert champion.tags["trigger_reason"] == REASON
    assert champion.tags["git_commit"] == CODE_VERSION
    assert champion.tags["window_end"] == WINDOW_END.isoformat()
    assert float(champion.tags["metric.roc_auc"]) >= 0.75
    # The registry and the auth users are in the run's PostgreSQL databases.
    assert _query(prod, "mlflow", "SELECT name FROM registered_models") == [("churn",)]
    users = _query(prod, "mlflow_auth", "SELECT username, is_admin FROM users")
    assert users == [(prod.secrets.mlflow_username, True)]


@pytest.mark.parametrize("login", [None, "wrong-password"])
def test_mlflow_refuses_clients_without_valid_credentials(prod, training_run, login) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with pytest.MonkeyPatch.context() as patch:
        if login is None:
            patch.delenv("MLFLOW_TRACKING_USERNAME")
            patch.delenv("MLFLOW_TRACKING_PASSWORD")
        else:
            patch.setenv("MLFLOW_TRACKING_PASSWORD", login)
        with pytest.raises(MlflowException, match="401"):
            MlflowClient(tracking_uri=prod.mlflow_url).get_registered_model("churn")


def test_data_and_model_artifacts_are_in_s3(prod, training_run) -> None:
    from mlflow import MlflowClient

    from trainyard.core.storage import S3Uri

    s3 = s3_client_of(prod)
    tags = (
        MlflowClient(tracking_uri=prod.mlflow_url)
        .get_model_version_by_alias("churn", "champion")
        .tags
    )
    snapshot = S3Uri.parse(tags["snapshot_uri"])
    body = s3.get_object(Bucket=snapshot.bucket, Key=snapshot.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == tags["snapshot_sha256"]
    result = S3Uri.parse(tags["validation_result_uri"])
    s3.head_object(Bucket=result.bucket, Key=result.key)

    champion = MlflowClient(tracking_uri=prod.mlflow_url).get_model_version_by_alias(
        "churn", "champion"
    )
    model_id = champion.source.removeprefix("models:/")
    keys = {
        item["Key"]
        for item in s3.list_objects_v2(Bucket=prod.buckets[2], Prefix="artifacts/")["Contents"]
    }
    model_files = {key.rsplit("/", 1)[1] for key in keys if f"/models/{model_id}/artifacts/" in key}
    assert {"MLmodel", "model.skops"} <= model_files


def test_compose_healthcheck_commands_pass_against_the_running_services(prod) -> None:
    """The healthcheck commands of docker-compose.yaml, run against the local processes."""
    from airflow.utils.net import get_hostname

    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    env = prod.service_env({**prod.client_env(), **prod.airflow_env()})
    hosts = {
        "airflow-apiserver": ("localhost:8080", f"{prod.ports.airflow}"),
        "airflow-scheduler": ("localhost:8974", f"{prod.extra_ports['scheduler_health']}"),
        "mlflow": ("localhost:5000", f"{prod.ports.mlflow}"),
    }
    # Compose unescapes $$ to $; HOSTNAME is what each service registered under.
    hostnames = {
        "airflow-dag-processor": get_hostname(),
        "airflow-triggerer": get_hostname(),
        "airflow-worker": "trainyard-worker-1",
    }
    for service in ("airflow-apiserver", "airflow-scheduler", "mlflow", *hostnames):
        kind, *command = compose[service]["healthcheck"]["test"]
        line = command[0] if kind == "CMD-SHELL" else " ".join(command)
        line = line.replace("$$", "$")
        if service in hosts:
            old, port = hosts[service]
            line = line.replace(old, f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-c", line],
            env={**env, "HOSTNAME": hostnames.get(service, "")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{service}: {line}\n{result.stdout}{result.stderr}"


def test_model_server_serves_the_champion_and_requires_the_api_key(prod, training_run) -> None:
    """The model server follows the new champion; /predict needs the key; compose's check."""
    import httpx
    from mlflow import MlflowClient

    from trainyard_dev.churn import generate_day
    from trainyard_dev.demo import follow_champion

    key = prod.secrets.serving_api_key
    champion = MlflowClient().get_model_version_by_alias("churn", "champion")
    assert follow_champion(prod, "churn", champion.version, key, timeout=300) is not None
    row = generate_day(WINDOW_END, 1).drop(columns=["event_date", "churned"])
    body = {"records": json.loads(row.to_json(orient="records"))}
    url = f"{prod.serving_url}/predict/churn"

    anonymous = httpx.post(url, json=body, timeout=30)
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    keyed = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert keyed.status_code == 200, keyed.text
    assert keyed.json()["model_version"] == champion.version
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    _, *command = compose["model-server"]["healthcheck"]["test"]
    line = " ".join(command).replace("localhost:8000", f"127.0.0.1:{prod.ports.serving}")
    assert subprocess.run(["bash", "-c", line], capture_output=True, timeout=60).returncode == 0


def test_model_server_webhook_is_registered_and_delivered_behind_mlflow_auth(
    prod, training_run
) -> None:
    """Behind MLflow's basic auth the server registers its webhook (an admin-only API, so with
    the admin login compose gives it), and MLflow delivers signed alias events to it."""
    import httpx
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from trainyard.serving.webhooks import ALIAS_EVENTS, WEBHOOK_NAME

    client = MlflowClient()
    url = f"{prod.serving_url}/webhooks/mlflow"
    hooks = [hook for hook in client.list_webhooks(max_results=1000) if hook.url == url]
    assert [(hook.name, str(hook.status)) for hook in hooks] == [(WEBHOOK_NAME, "ACTIVE")]
    assert sorted(str(event) for event in hooks[0].events) == sorted(ALIAS_EVENTS)
    # MLflow signs a test delivery with the stored secret; the server checks it and answers 200.
    tried = client.test_webhook(hooks[0].webhook_id)
    assert tried.success and tried.response_status == 200, tried

    def delivered() -> float:
        text = httpx.get(f"{prod.serving_url}/metrics", timeout=10).text
        found = re.search(
            r'^trainyard_serving_webhook_deliveries_total{followed="true"} ([0-9.e+]+)$',
            text,
            re.MULTILINE,
        )
        return float(found.group(1)) if found else 0.0

    before = delivered()
    champion = client.get_model_version_by_alias("churn", "champion")
    # Setting the alias again is an alias event like any move (the server re-reads, no swap).
    client.set_registered_model_alias("churn", "champion", champion.version)
    deadline = time.monotonic() + 60
    while delivered() <= before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert delivered() > before, "MLflow did not deliver the alias event to the model server"

    with pytest.MonkeyPatch.context() as patch:  # anyone else is refused the webhook API
        patch.delenv("MLFLOW_TRACKING_USERNAME")
        patch.delenv("MLFLOW_TRACKING_PASSWORD")
        with pytest.raises(MlflowException, match="401"):
            MlflowClient(tracking_uri=prod.mlflow_url).list_webhooks()


@pytest.mark.last_in_module  # it stops the stack the other tests of this module use
def test_teardown_stops_everything_and_drops_the_databases(prod) -> None:
    import redis

    groups = {pid for pid in prod.status().values() if pid}
    claimed = redis.Redis.from_url(prod.broker_url)
    assert claimed.exists("trainyard:prodstack:owner")

    prod.down()

    assert not any(prod.status().values())
    assert _live_processes_in_groups(groups) == []
    assert prod.postgres.existing(list(prod.databases.values())) == []
    roles = _query_admin(
        prod, "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{prod.run_name}%",)
    )
    assert roles == []
    assert claimed.dbsize() == 0


def _query_admin(prod: Any, sql: str, params: tuple) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(prod.postgres.url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _live_processes_in_groups(groups: set[int]) -> list[int]:
    """PIDs (not zombies) whose process group is one a service was started in."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp in groups and state != "Z":
            live.append(int(stat.parent.name))
    return live

"""``make demo``: start the embedded stack, land churn data, train through Airflow, show results.

Then the drift half: land a drifted partition for today, run the drift monitor ``drift_churn``,
print its verdict and a report URL, and follow the retrain it triggers to its outcome. The model
server (started with the stack) is shown serving the champion, with a ``curl`` example, and
following the retrain's promotion.

Then the performance half: score the last two days with the champion (``score_churn``), land
their labels "a week later" with the generator's concept-drift knob, run the performance
monitor ``performance_churn``, print realised vs registered metrics and follow the retrain the
decay triggers.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from trainyard_dev.airflow_api import AirflowApi
from trainyard_dev.config import StackConfig
from trainyard_dev.devstack import AIRFLOW_ADMIN, Stack

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec
    from trainyard_dev.prodstack.stack import ProdStack

DEMO_DAYS = 35
DEMO_ROWS_PER_DAY = 2000
#: Covariate drift the demo lands for today: customers stay longer and pay more. total_charges
#: (tenure x monthly) follows, so three of the ten columns drift (churn's drift_share is 0.3).
DEMO_DRIFT = {"tenure_months": 1.0, "monthly_charges": 1.0}
#: How differently churn follows the features once the scored days' labels arrive (0..1).
DEMO_CONCEPT_DRIFT = 0.8


def demo_spec() -> PipelineSpec:
    """The spec the demo trains and monitors (churn), for its DAG ids and experiment names."""
    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_spec

    return load_spec(Settings.from_env().pipelines_dir / "churn.yaml")


def default_stack() -> Stack:
    """The stack in ``$TRAINYARD_STATE_DIR`` (default ``.stack/``), ports from the environment."""
    config = StackConfig.from_env()
    return Stack(state_dir=config.state_dir, ports=config.ports)


def land_demo_data(stack: Stack, days: int = DEMO_DAYS, rows_per_day: int = DEMO_ROWS_PER_DAY):
    """Write stable churn partitions for the ``days`` days up to yesterday (UTC).

    Returns:
        The first and last dates written.
    """
    from trainyard.core.settings import Settings
    from trainyard_dev.churn import land_days

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


def print_task_states(api: AirflowApi, dag_id: str, run_id: str) -> None:
    """Where a run that did not succeed stopped: the state of each of its tasks."""
    states = api.task_states(dag_id, run_id)
    print(f"task states: {states}; see the task logs in the Airflow UI")


def print_outcome(outcome: dict) -> None:
    """Human-readable outcome of a training run."""
    from trainyard.training.outcome import Outcome

    print(Outcome.model_validate(outcome).describe())


def land_drifted_day(day: date, rows_per_day: int = DEMO_ROWS_PER_DAY) -> None:
    """Write one day's churn partition with the demo's covariate drift.

    Args:
        day: The partition date: the day after the stable data, so the retrain's window (which
            ends on the drifted day) has no gap even when the demo runs across midnight UTC.
        rows_per_day: Rows in the partition.
    """
    from trainyard.core.settings import Settings
    from trainyard_dev.churn import Knobs, land_days

    land_days(Settings.from_env(), day, day, rows_per_day, Knobs(covariate_drift=DEMO_DRIFT))


def wait_until_idle(api: AirflowApi, dag_id: str, timeout: float = 1800) -> None:
    """Wait until a DAG has no queued or running runs (a drift retrain is refused meanwhile)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?state=queued&state=running")
        if not page["total_entries"]:
            return
        time.sleep(3)
    raise TimeoutError(f"{dag_id} still has queued or running runs after {timeout:.0f} s")


def drift_through_airflow(stack: Stack, api: AirflowApi, day: date) -> int:
    """Land drifted data, run ``drift_churn``, show the verdict and report, follow the retrain.

    Returns:
        0 when the drift run succeeded and a triggered retrain finished (registered or
        rejected by the gate), else 1.
    """
    from mlflow import MlflowClient

    from trainyard.core import storage
    from trainyard.core.settings import Settings
    from trainyard.core.tracking import mlflow_run_url
    from trainyard.drift.ledger import decision_uri, last_retrain
    from trainyard.drift.policy import RetrainDecision
    from trainyard.drift.steps import DriftSummary

    settings = Settings.from_env()
    spec = demo_spec()
    land_drifted_day(day)
    drifted = ", ".join(f"{c} (+{s:g})" for c, s in DEMO_DRIFT.items())
    print(f"\n--- drift ---\nlanded partition {day} with covariate drift on {drifted}")
    wait_until_idle(api, spec.training_dag_id)  # the nightly DAG's catch-up run may still be going
    api.wait_for_dag(spec.drift_dag_id)
    before = last_retrain(settings, spec.name)
    run = api.trigger(spec.drift_dag_id, conf={})
    api.set_paused(spec.drift_dag_id, False)
    print(f"triggered drift_churn run {run['dag_run_id']}; waiting ...", flush=True)
    finished = api.wait_for_run(spec.drift_dag_id, run["dag_run_id"], timeout=900)
    print(f"run {finished['dag_run_id']} of drift_churn: {finished['state']}")
    if finished["state"] != "success":
        print_task_states(api, spec.drift_dag_id, finished["dag_run_id"])
        return 1
    check = api.xcom(spec.drift_dag_id, run["dag_run_id"], "check_drift")
    decision = api.xcom(spec.drift_dag_id, run["dag_run_id"], "decide")
    summary = DriftSummary.model_validate_json(storage.get_bytes(settings, check["summary_uri"]))
    print(summary.describe())
    if summary.report_uri:
        url = storage.presigned_url(settings, summary.report_uri)
        print(f"\nopen the report (presigned, valid 7 days):\n  {url}")
    experiment = MlflowClient().get_experiment_by_name(spec.monitoring_experiment)
    print(
        "or in MLflow: "
        + mlflow_run_url(stack.mlflow_url, experiment.experiment_id, check["mlflow_run_id"])
    )
    retrain = last_retrain(settings, spec.name)
    if retrain is None or retrain == before:
        print(f"\ndecision: {decision['message']}\nno new drift-triggered retrain")
        return 1 if decision["action"] == "retrain" else 0
    if retrain.monitor_run_id != run["dag_run_id"]:
        # Unpausing the hourly DAG can start a scheduled run; whichever ran first asked for the
        # retrain, and storm protection kept the other one from asking again.
        first = RetrainDecision.model_validate_json(
            storage.get_bytes(
                settings, decision_uri(settings, spec.name, retrain.monitor_run_id, retrain.signal)
            )
        )
        print(f"\ndrift run {retrain.monitor_run_id} (scheduled, ran first): {first.message}")
        print(f"drift run {run['dag_run_id']} (ours): {decision['message']}")
    else:
        print(f"\ndecision: {decision['message']}")
    print(f"\nretrain: {retrain.training_dag_id} run {retrain.training_run_id}; waiting ...")
    trained = api.wait_for_run(retrain.training_dag_id, retrain.training_run_id)
    print(f"run {retrain.training_run_id} of {retrain.training_dag_id}: {trained['state']}")
    if trained["state"] != "success":
        print_task_states(api, retrain.training_dag_id, retrain.training_run_id)
        return 1
    retrained = api.xcom(retrain.training_dag_id, retrain.training_run_id, "report")
    print_outcome(retrained)
    if retrained["status"] == "registered":
        took = follow_champion(stack, spec.name, retrained["version"])
        if took is None:
            print(f"model server: still not serving v{retrained['version']}; see its log")
            return 1
        print(f"model server: now serves {spec.name} v{retrained['version']} ({took:.1f} s later)")
        print("  " + ask_server(stack, spec.name))
    return 0


def run_through_airflow(api: AirflowApi, dag_id: str, conf: dict) -> dict:
    """Trigger a run, unpause the DAG, wait, and print how it ended.

    Returns:
        The finished run.
    """
    api.wait_for_dag(dag_id)
    run = api.trigger(dag_id, conf=conf)
    api.set_paused(dag_id, False)
    print(f"triggered {dag_id} run {run['dag_run_id']}; waiting ...", flush=True)
    finished = api.wait_for_run(dag_id, run["dag_run_id"], timeout=900)
    print(f"run {finished['dag_run_id']} of {dag_id}: {finished['state']}")
    if finished["state"] != "success":
        print_task_states(api, dag_id, finished["dag_run_id"])
    return finished


def performance_through_airflow(stack: Stack, api: AirflowApi, last_day: date) -> int:
    """Score two days, land their labels with concept drift, run the monitor, follow the retrain.

    ``last_day`` is the drifted day the drift retrain trained up to: the decay retrain's window
    ends on the monitored window's last day, and a window ending before the champion's would be
    refused as older. Its labels land with the same covariate drift (the generator is seeded
    by day, so the features are the ones scored), the day before with concept drift only.

    The drift retrain above started the cooldown both monitors share, so the monitor run is
    forced (``force``: past the cooldown, never while training is queued or running); without
    it the decay verdict would be recorded as "retrain suppressed: cooldown until …".

    Returns:
        0 when the decay was found, the retrain it triggered finished and, when it promoted a
        new champion, the model server answers with it; else 1.
    """
    from trainyard.core import storage
    from trainyard.core.settings import Settings
    from trainyard.monitoring.steps import PerformanceSummary
    from trainyard.scoring.steps import ScoringRecord
    from trainyard_dev.churn import Knobs, land_days

    settings = Settings.from_env()
    spec = demo_spec()
    days = 2
    first_day = last_day - timedelta(days=days - 1)
    print(f"\n--- realised performance ---\nscoring {first_day} .. {last_day} with the champion")
    wait_until_idle(api, spec.training_dag_id)  # score with the champion the retrain left
    conf = {"window_end": last_day.isoformat(), "window_days": days}
    scored = run_through_airflow(api, spec.scoring_dag_id, conf)
    if scored["state"] != "success":
        return 1
    record = api.xcom(spec.scoring_dag_id, scored["dag_run_id"], "score")
    print(ScoringRecord.model_validate(record).describe())
    before_last = last_day - timedelta(days=1)
    land_days(
        settings, first_day, before_last, DEMO_ROWS_PER_DAY, Knobs(concept_drift=DEMO_CONCEPT_DRIFT)
    )
    land_days(
        settings,
        last_day,
        last_day,
        DEMO_ROWS_PER_DAY,
        Knobs(covariate_drift=DEMO_DRIFT, concept_drift=DEMO_CONCEPT_DRIFT),
    )
    print(
        f"\nlabels of {first_day} .. {last_day} landed ({spec.labels.delay_days} days later in "
        f"production) with concept drift {DEMO_CONCEPT_DRIFT:g}: churn follows other causes"
    )
    checked = run_through_airflow(
        api, spec.performance_dag_id, {"window_end": last_day.isoformat(), "force": True}
    )
    if checked["state"] != "success":
        return 1
    evaluated = api.xcom(spec.performance_dag_id, checked["dag_run_id"], "evaluate")
    decision = api.xcom(spec.performance_dag_id, checked["dag_run_id"], "decide")
    summary = PerformanceSummary.model_validate_json(
        storage.get_bytes(settings, evaluated["summary_uri"])
    )
    print(summary.describe())
    print(f"\ndecision: {decision['message']}")
    if not decision["retrain"]:
        return 1
    run_id = decision["training_run_id"]
    print(f"\nretrain: {spec.training_dag_id} run {run_id}; waiting ...")
    trained = api.wait_for_run(spec.training_dag_id, run_id)
    print(f"run {run_id} of {spec.training_dag_id}: {trained['state']}")
    if trained["state"] != "success":
        print_task_states(api, spec.training_dag_id, run_id)
        return 1
    retrained = api.xcom(spec.training_dag_id, run_id, "report")
    print_outcome(retrained)
    if retrained["status"] != "registered":
        print(f"model server: keeps serving the champion; {ask_server(stack, spec.name)}")
        return 0
    took = follow_champion(stack, spec.name, retrained["version"])
    if took is None:
        print(f"model server: still not serving v{retrained['version']}; see its log")
        return 1
    print(f"model server: now serves {spec.name} v{retrained['version']} ({took:.1f} s later)")
    print("  " + ask_server(stack, spec.name))
    return 0


def served_version(stack: Stack, pipeline: str, api_key: str | None = None) -> str | None:
    """The version the model server serves for a pipeline now (None: none, or no answer)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        answer = httpx.get(f"{stack.serving_url}/models", headers=headers, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    versions = {model["name"]: model["version"] for model in answer.get("models", [])}
    return versions.get(pipeline)


def follow_champion(
    stack: Stack, pipeline: str, version: str, api_key: str | None = None, timeout: float = 300
) -> float | None:
    """Wait until the model server serves ``version`` of a pipeline.

    Returns:
        Seconds it took (0 when it already did), or None when it did not within ``timeout``.
    """
    import time

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if served_version(stack, pipeline, api_key) == version:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def curl_example(stack: Stack, pipeline: str, api_key: str | None = None) -> str:
    """A ``curl`` command predicting one generated churn customer (the demo's pipeline)."""
    import json

    from trainyard_dev.churn import generate_day

    row = generate_day(datetime.now(UTC).date(), 1).drop(columns=["event_date", "churned"])
    record = json.loads(row.to_json(orient="records"))[0]
    key = f" -H 'Authorization: Bearer {api_key}'" if api_key else ""
    body = json.dumps({"records": [record]})
    return f"curl -s {stack.serving_url}/predict/{pipeline}{key} -d '{body}'"


def ask_server(stack: Stack, pipeline: str, api_key: str | None = None) -> str:
    """Predict one generated churn customer through the model server; what it answered."""
    import json

    import httpx

    from trainyard_dev.churn import generate_day

    row = generate_day(datetime.now(UTC).date(), 1).drop(columns=["event_date", "churned"])
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"records": json.loads(row.to_json(orient="records"))}
    try:
        response = httpx.post(
            f"{stack.serving_url}/predict/{pipeline}", json=body, headers=headers, timeout=30
        )
    except httpx.HTTPError as error:
        return f"POST /predict/{pipeline} failed: {error}"
    if response.status_code != 200:
        return f"POST /predict/{pipeline}: HTTP {response.status_code} {response.text[:200]}"
    answer = response.json()
    probabilities = ", ".join(f"P({k})={v:.3f}" for k, v in answer["probabilities"][0].items())
    return (
        f"POST /predict/{pipeline} -> {answer['model_name']} v{answer['model_version']}: "
        f"customer {answer['row_ids'][0]} prediction {answer['predictions'][0]} ({probabilities})"
    )


def show_serving(stack: Stack, outcome: dict, api_key: str | None = None) -> None:
    """Wait for the model server to serve the run's champion, then print a curl example.

    A run that promoted nothing leaves the champion as it was: the server answers with it.
    """
    pipeline, version = outcome["pipeline"], outcome["version"]
    if outcome["status"] != "registered":
        print(f"\nmodel server ({stack.serving_url}) keeps serving the champion")
        print("  " + ask_server(stack, pipeline, api_key))
        return
    took = follow_champion(stack, pipeline, version, api_key)
    if took is None:
        print(f"\nmodel server: not serving {pipeline} v{version} yet; see its log")
        return
    print(f"\nmodel server ({stack.serving_url}) serves {pipeline} v{version}")
    print("  " + ask_server(stack, pipeline, api_key))
    print("try it:\n  " + curl_example(stack, pipeline, api_key))


def print_ui_tour(stack: Stack, api: AirflowApi, dag_id: str, run_id: str) -> None:
    """Where to click in the Airflow UI: the green ``train`` task, its MLflow link, Models page.

    Checks what it points at (the task's state and the MLflow run its link opens) so the
    directions are never stale.
    """
    from urllib.parse import quote

    from trainyard.core.settings import Settings
    from trainyard.ui.links import LINKS_XCOM_KEY, LinkKind, link_url, references_of
    from trainyard.ui.models_page import URL_PREFIX

    state = api.task_states(dag_id, run_id).get("train")
    try:
        recorded = api.xcom(dag_id, run_id, "train", LINKS_XCOM_KEY)
    except Exception:  # noqa: BLE001 (no links recorded: said below, the demo goes on)
        recorded = None
    mlflow_url = link_url(
        references_of(recorded).get(LinkKind.MLFLOW_RUN.value),
        mlflow_ui_url=Settings.from_env().mlflow_ui_url,
        presign=lambda uri: uri,
    )
    print(
        "\n".join(
            [
                "",
                "--- in the Airflow UI ---",
                f"1. log in at {stack.airflow_url} (user {AIRFLOW_ADMIN}, "
                f"password {stack.credentials.airflow_password})",
                f"2. open the `train` task ({state}) of run {run_id}:",
                f"   {stack.airflow_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}"
                "/tasks/train/details",
                f"3. click its '{LinkKind.MLFLOW_RUN.value}' button (task header): it opens",
                f"   {mlflow_url or '(no MLflow run recorded by this task)'}",
                "4. 'Models' in the navigation (one row per pipeline: its champion, metrics,",
                "   last training, drift, Retrain now / Roll back):",
                f"   {stack.airflow_url}/plugin/trainyard-models "
                f"(the page alone: {stack.airflow_url}{URL_PREFIX}/models)",
            ]
        )
    )


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
                f"Model server: {stack.serving_url}  (/models, /ready, /metrics; no API key here)",
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
    training_dag = demo_spec().training_dag_id
    for dag_id in (training_dag, "train_breast_cancer"):
        api.wait_for_dag(dag_id)
        api.set_paused(dag_id, False)
    finished, outcome = train_through_airflow(api, training_dag, "demo: make demo")
    print(f"\nrun {finished['dag_run_id']} of {training_dag}: {finished['state']}")
    if outcome is None:
        print_task_states(api, training_dag, finished["dag_run_id"])
    else:
        print_outcome(outcome)
        show_serving(stack, outcome)
        trained_by = outcome["lineage"].get("airflow_run_id") or finished["dag_run_id"]
        if trained_by != finished["dag_run_id"]:
            print(
                f"note: v{outcome['version']} was trained by run {trained_by} on the same data, "
                "spec and code (unpausing a DAG with catchup=False starts its latest scheduled "
                "run), so this run reused it instead of registering a duplicate."
            )
        print_ui_tour(stack, api, training_dag, trained_by)
    code = 1
    drifted_day = end + timedelta(days=1)
    if outcome is not None:
        code = drift_through_airflow(stack, api, drifted_day)
    if code == 0:
        code = performance_through_airflow(stack, api, drifted_day)
    print_access(stack)
    return code


# ---- the production shape (make prod-local) ----------------------------------------------------


def print_prod_access(stack: ProdStack) -> None:
    """URLs and logins."""
    s = stack.secrets
    print(
        "\n".join(
            [
                "",
                f"Airflow UI/API : {stack.airflow_url}  (user {s.airflow_admin_username}, "
                f"password {s.airflow_admin_password})",
                f"MLflow UI      : {stack.mlflow_url}  (user {s.mlflow_username}, "
                f"password {s.mlflow_password})",
                f"S3 (SeaweedFS) : {stack.s3_url}",
                f"Model server   : {stack.serving_url}  (API key {s.serving_api_key})",
                f"Databases      : {', '.join(stack.databases.values())} on {stack.postgres_url}",
                f"Celery broker  : {stack.broker_url}",
                f"Client settings: source {stack.state_dir / 'stack.env'}",
                "Stop everything and drop the databases: make prod-local-down",
            ]
        )
    )


def run_prod_demo(stack: ProdStack) -> int:
    """Start the production shape, land churn data, train through the REST API, show the result.

    Returns:
        Process exit code: 0 when the run succeeded.
    """
    print(f"starting the production shape under {stack.state_dir} ...", flush=True)
    stack.up()
    start, end = land_demo_data(stack)
    print(f"landed churn partitions {start} .. {end}", flush=True)
    api = stack.api()
    training_dag = demo_spec().training_dag_id
    api.wait_for_dag(training_dag)
    api.set_paused(training_dag, False)
    finished, outcome = train_through_airflow(api, training_dag, "make prod-local")
    print(f"\nrun {finished['dag_run_id']} of {training_dag}: {finished['state']}")
    if outcome is None:
        print_task_states(api, training_dag, finished["dag_run_id"])
    else:
        print_outcome(outcome)
        show_serving(stack, outcome, stack.secrets.serving_api_key)
    print_prod_access(stack)
    return 0 if outcome is not None else 1

"""The Airflow UI as the control room, in a real headless Chromium against ``airflow standalone``.

One Airflow (standalone: scheduler, dag-processor, triggerer, API server with the trainyard_ui
plugin) on the session's S3 and MLflow servers; one training run of breast_cancer through it.
The browser logs in, opens the Models page, follows the ``train`` task's *MLflow run* link to the
run, and triggers *Retrain now* with a reason. Screenshots go to test-artifacts/ui/.

Needs Debian's Chromium (``make browser`` installs it; the README's test command runs that):
without it the module is skipped locally with the reason, and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e

#: Debian's Chromium (``make browser``); the CI workflow points it at the runner's Chrome.
CHROMIUM = Path(os.environ.get("TRAINYARD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "ui"
PIPELINE = "ui_breast_cancer"
DAG_ID = f"train_{PIPELINE}"


def _require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM,) if not path.exists()]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if missing:
        message = f"browser test needs {', '.join(missing)}: run `make browser`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: this test must run, not skip)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def airflow(stack: Any) -> Iterator[Any]:
    """``airflow standalone`` with the plugin on the session's S3 and MLflow; one trained run."""
    _require_browser()
    from trainyard_dev.airflow_api import AirflowApi
    from trainyard_dev.devstack import AIRFLOW_ADMIN

    stack.start_airflow()
    try:
        api = AirflowApi(stack.airflow_url, AIRFLOW_ADMIN, stack.credentials.airflow_password)
        api.wait_for_dag(DAG_ID, timeout=600)
        api.set_paused(DAG_ID, False)
        run = api.trigger(DAG_ID, {"reason": "browser test: first champion"})
        finished = api.wait_for_run(DAG_ID, run["dag_run_id"], timeout=1200)
        assert finished["state"] == "success", api.task_states(DAG_ID, run["dag_run_id"])
        yield api, run["dag_run_id"]
    finally:
        stack.stop("airflow")


@pytest.fixture(scope="module")
def page(airflow: Any, stack: Any) -> Iterator[Any]:
    """A logged-in Chromium page."""
    from playwright.sync_api import sync_playwright

    from trainyard_dev.devstack import AIRFLOW_ADMIN

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(stack.airflow_url)
        page.fill("input[name=username]", AIRFLOW_ADMIN)
        page.fill("input[name=password]", stack.credentials.airflow_password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "login" not in url)
        try:
            yield page
        finally:
            browser.close()


def test_models_page_refuses_anonymous_requests(airflow: Any, stack: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.airflow_url}/trainyard/models", timeout=30)
    assert refused.value.code == 401


def test_models_page_shows_the_champion_from_the_registry(
    page: Any, airflow: Any, stack: Any
) -> None:
    from trainyard.core.tracking import champion_version

    api, _ = airflow
    champion = champion_version(PIPELINE)
    latest_run = api.runs(DAG_ID)[-1]["dag_run_id"]
    page.goto(f"{stack.airflow_url}/plugin/trainyard-models")
    frame = page.frame_locator("iframe")
    row = frame.locator(f"tr[data-pipeline={PIPELINE}]")
    row.wait_for()
    page.screenshot(path=ARTIFACTS / "models-page-in-airflow.png", full_page=True)
    text = row.inner_text()
    assert f"{PIPELINE} v{champion.version}" in text
    assert champion.tags["airflow_run_id"] in text  # which run registered it
    assert latest_run in text  # the last training run


def test_train_task_links_to_its_mlflow_run(page: Any, airflow: Any, stack: Any) -> None:
    api, run_id = airflow
    trained = api.xcom(DAG_ID, run_id, "train")
    page.goto(f"{stack.airflow_url}/dags/{DAG_ID}/runs/{run_id}/tasks/train/details")
    link = page.get_by_role("link", name="MLflow run")
    link.wait_for()
    page.screenshot(path=ARTIFACTS / "train-task-links.png", full_page=True)
    assert page.get_by_role("link", name="Drift report").count() == 0  # not produced by train
    page.goto(link.get_attribute("href"), wait_until="load")
    page.get_by_text(trained["mlflow_run_id"]).first.wait_for()
    page.screenshot(path=ARTIFACTS / "mlflow-run.png", full_page=True)
    assert trained["experiment_id"] in page.url and trained["mlflow_run_id"] in page.url


def test_validate_task_links_to_data_docs_without_s3_credentials(
    page: Any, airflow: Any, stack: Any
) -> None:
    _, run_id = airflow
    page.goto(f"{stack.airflow_url}/dags/{DAG_ID}/runs/{run_id}/tasks/validate/details")
    link = page.get_by_role("link", name="Data Docs")
    link.wait_for()
    href = link.get_attribute("href")
    assert "X-Amz-Signature=" in href or "Signature=" in href  # presigned, expires
    with urllib.request.urlopen(href, timeout=30) as response:  # no credentials of our own
        assert b"Expectation" in response.read()


def test_retrain_now_triggers_a_run_carrying_the_reason(page: Any, airflow: Any, stack: Any):
    api, _ = airflow
    reason = f"browser test: labels fixed {time.time_ns()}"
    page.goto(f"{stack.airflow_url}/trainyard/models")
    row = page.locator(f"tr[data-pipeline={PIPELINE}]")
    retrain = row.locator("form.retrain")
    retrain.locator("input[name=reason]").fill(reason)
    retrain.get_by_role("button", name="Retrain now").click()
    notice = page.get_by_role("status")
    notice.wait_for()
    assert reason in notice.inner_text()
    page.screenshot(path=ARTIFACTS / "retrain-now.png", full_page=True)
    carrying = [run for run in api.runs(DAG_ID) if (run["conf"] or {}).get("reason") == reason]
    assert [run["run_type"] for run in carrying] == ["manual"]
    page.reload()
    assert reason in page.locator(f"tr[data-pipeline={PIPELINE}]").inner_text()


def test_history_shows_the_promotion_and_roll_back_triggers_the_rollback_dag(
    page: Any, airflow: Any, stack: Any
) -> None:
    from trainyard.core.tracking import champion_version

    api, _ = airflow
    champion = champion_version(PIPELINE)
    page.goto(f"{stack.airflow_url}/trainyard/models/{PIPELINE}")
    events = page.locator("tr.event")
    events.first.wait_for()
    assert f"→ v{champion.version}" in events.last.inner_text()  # oldest: the first promotion
    page.screenshot(path=ARTIFACTS / "history.png", full_page=True)

    reason = f"browser test: roll back {time.time_ns()}"
    page.goto(f"{stack.airflow_url}/trainyard/models")
    row = page.locator(f"tr[data-pipeline={PIPELINE}]")
    rollback = row.locator("form.rollback")
    rollback.locator("input[name=to_version]").fill(f"v{champion.version}")
    rollback.locator("input[name=reason]").fill(reason)
    rollback.get_by_role("button", name="Roll back").click()
    assert reason in page.get_by_role("status").inner_text()
    runs = api.runs(f"rollback_{PIPELINE}")
    assert [(run["conf"]["to_version"], run["conf"]["reason"]) for run in runs] == [
        (champion.version, reason)
    ]

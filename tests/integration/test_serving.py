"""The model server as a real process on the session's MLflow server and SeaweedFS.

One server per module (the machine is slow): API key on (the production shape), a long poll
period so alias moves are followed through MLflow's webhook, and a prediction log that flushes
every ``FLUSH_ROWS`` rows. Its S3 endpoint is a fault proxy (tests/faults.py), so a test can cut
the server off from S3 (a real outage for it) while the session's S3 stays up for the others.
Polling is checked on the alias follower itself, in this process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults import FaultProxy
from tests.support import churn_rows, feature_records, serving_pipelines
from trainyard_dev.services import free_ports, wait_for

PIPELINE = "churn_serving"
UNTRAINED = "churn_serving_untrained"
API_KEY = "test-key-not-a-secret"
FLUSH_ROWS = 40


@pytest.fixture(scope="module")
def registry(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A pipelines folder with the serving spec, and two registered versions (v1 champion)."""
    return serving_pipelines(tmp_path_factory.mktemp("serving-pipelines"), PIPELINE, UNTRAINED)


@pytest.fixture(scope="module")
def s3_proxy(stack: Any) -> Iterator[FaultProxy]:
    proxy = FaultProxy(stack.s3_url)
    yield proxy
    proxy.close()


def _start(
    registry: dict[str, Any], s3_proxy: FaultProxy, folder: Path
) -> tuple[subprocess.Popen, str, Path]:
    """``trainyard serve`` as a process: API key, webhook, log flushed every FLUSH_ROWS rows,
    rows S3 refuses at shutdown spilled to ``folder/spill``; ready when this returns.

    Returns:
        The process, its base URL and its log file.
    """
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TRAINYARD_PIPELINES_DIR": str(registry["folder"]),
        "AWS_ENDPOINT_URL_S3": s3_proxy.url,
        "TRAINYARD_SERVING_API_KEY": API_KEY,
        "TRAINYARD_SERVING_POLL_SECONDS": "600",
        "TRAINYARD_SERVING_WEBHOOK_URL": f"{url}/webhooks/mlflow",
        "TRAINYARD_SERVING_WEBHOOK_SECRET": "webhook-secret-for-tests",
        "TRAINYARD_SERVING_LOG_FLUSH_SECONDS": "3600",
        "TRAINYARD_SERVING_LOG_FLUSH_ROWS": str(FLUSH_ROWS),
        "TRAINYARD_SERVING_LOG_SPILL_DIR": str(folder / "spill"),
    }
    log_path = folder / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainyard", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _ready(url), "the model server's /ready", 180, log_path)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return process, url, log_path


@pytest.fixture(scope="module")
def server(
    stack: Any,
    registry: dict[str, Any],
    s3_proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """The module's server (:func:`_start`)."""
    process, url, log_path = _start(registry, s3_proxy, tmp_path_factory.mktemp("serving-log"))
    try:
        yield {"url": url, "process": process, "log": log_path}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _client(server: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=server["url"], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )


def _metric(server: dict[str, Any], name: str) -> float:
    text = httpx.get(f"{server['url']}/metrics", timeout=10).text
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _served_version(client: httpx.Client) -> str:
    (model,) = [m for m in client.get("/models").json()["models"] if m["name"] == PIPELINE]
    return model["version"]


def _wait_for_version(client: httpx.Client, version: str, timeout: float = 90) -> float:
    started = time.monotonic()
    wait_for(lambda: _served_version(client) == version, f"v{version} served", timeout)
    return time.monotonic() - started


def test_predictions_equal_the_champion_loaded_by_mlflow(server, registry) -> None:
    import mlflow

    frame = churn_rows(25)
    with _client(server) as client:
        _wait_for_version(client, registry["v1"])
        response = client.post(f"/predict/{PIPELINE}", json={"records": feature_records(frame)})
        split = client.post(
            f"/predict/{PIPELINE}",
            json={
                "dataframe_split": {
                    "columns": list(frame.drop(columns=["event_date", "churned"]).columns),
                    "data": frame.drop(columns=["event_date", "churned"]).values.tolist(),
                }
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    champion = mlflow.pyfunc.load_model(f"models:/{PIPELINE}@champion")
    schema = registry["spec"].schema_
    # As training does (and JSON cannot tell 3 from 3.0): numeric features as float.
    features = frame[list(schema.features)].astype({c: "float64" for c in schema.numeric_features})
    expected = champion.predict(features)
    assert body["predictions"] == expected.tolist()
    assert body["model_version"] == registry["v1"]
    assert body["row_ids"] == frame["customer_id"].tolist()
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in body["probabilities"])
    assert split.status_code == 200 and split.json()["predictions"] == body["predictions"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "body: not valid JSON"),
        (b'{"rows": []}', 'body: expected {"records": [...]}'),
        (b'{"records": []}', "records: no records to predict"),
        (b'{"records": [{"tenure_months": 3}]}', "records[0]: missing field 'monthly_charges'"),
        (
            b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}',
            "dataframe_split.data[0]: expected a list of 1 values",
        ),
    ],
)
def test_bad_bodies_get_422_naming_the_field(server, body: bytes, detail: str) -> None:
    with _client(server) as client:
        response = client.post(
            f"/predict/{PIPELINE}", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail), response.json()
    assert "Traceback" not in response.text


def test_wrong_type_and_oversized_bodies(server) -> None:
    record = feature_records(churn_rows(1))[0]
    with _client(server) as client:
        wrong = client.post(
            f"/predict/{PIPELINE}", json={"records": [record, {**record, "tenure_months": "abc"}]}
        )
        huge = client.post(
            f"/predict/{PIPELINE}", content=b'{"records": [' + b" " * (5 * 1024 * 1024) + b"]}"
        )
        unknown = client.post("/predict/nope", json={"records": [record]})
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "records[1].tenure_months: expected a number, got 'abc'"
    assert huge.status_code == 413
    assert unknown.status_code == 404


def test_ready_with_a_pipeline_that_has_no_champion_yet(server) -> None:
    ready = httpx.get(f"{server['url']}/ready", timeout=10)
    with _client(server) as client:
        untrained = client.post(f"/predict/{UNTRAINED}", json={"records": [{}]})
        models = client.get("/models").json()
    assert ready.status_code == 200 and ready.json()["no_champion"] == [UNTRAINED]
    assert untrained.status_code == 503
    assert untrained.json()["detail"] == f"pipeline {UNTRAINED!r} has no champion in the registry"
    assert [m["name"] for m in models["models"]] == [PIPELINE]
    assert models["no_champion"] == [UNTRAINED]


def test_the_api_key_is_required(server) -> None:
    record = feature_records(churn_rows(1))[0]
    plain = httpx.post(f"{server['url']}/predict/{PIPELINE}", json={"records": [record]})
    wrong = httpx.post(
        f"{server['url']}/predict/{PIPELINE}",
        json={"records": [record]},
        headers={"Authorization": "Bearer wrong"},
    )
    assert plain.status_code == 401 and wrong.status_code == 401
    assert httpx.get(f"{server['url']}/models").status_code == 401
    assert httpx.get(f"{server['url']}/health").status_code == 200


def test_follows_promotion_and_rollback_without_a_failed_request(server, registry) -> None:
    from mlflow import MlflowClient

    records = feature_records(churn_rows(3))
    with _client(server) as client:
        _wait_for_version(client, registry["v1"])
    outcomes: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with _client(server) as client:
            while not stop.is_set():
                response = client.post(f"/predict/{PIPELINE}", json={"records": records})
                version = response.json().get("model_version") if response.is_success else None
                outcomes.append((response.status_code, version))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        with _client(server) as client:
            time.sleep(1)
            MlflowClient().set_registered_model_alias(PIPELINE, "champion", registry["v2"])
            promoted_in = _wait_for_version(client, registry["v2"])
            time.sleep(1)
            MlflowClient().set_registered_model_alias(PIPELINE, "champion", registry["v1"])
            rolled_back_in = _wait_for_version(client, registry["v1"])
            time.sleep(1)
            models = client.get("/models").json()["models"]
    finally:
        stop.set()
        worker.join(30)
    # The poll period is 600 s: only the webhook explains a move followed this fast.
    assert promoted_in < 60 and rolled_back_in < 60
    statuses = {status for status, _ in outcomes}
    assert statuses == {200}, [o for o in outcomes if o[0] != 200][:5]
    versions = [version for _, version in outcomes]
    assert versions[0] == registry["v1"] and versions[-1] == registry["v1"]
    assert registry["v2"] in versions
    (model,) = [m for m in models if m["name"] == PIPELINE]
    assert model["alias"] == "champion" and model["version"] == registry["v1"]
    assert _metric(server, "trainyard_serving_model_swaps_total") >= 3


def test_polling_follows_the_alias_without_webhooks(stack, registry) -> None:
    from mlflow import MlflowClient

    from trainyard.serving.models import ChampionFollower

    follower = ChampionFollower([registry["spec"]], poll_seconds=1.0)
    follower.start()
    try:
        wait_for(lambda: follower.get(PIPELINE) is not None, "first load", 120)
        current = follower.get(PIPELINE).version
        other = registry["v2"] if current == registry["v1"] else registry["v1"]
        MlflowClient().set_registered_model_alias(PIPELINE, "champion", other)
        wait_for(lambda: follower.get(PIPELINE).version == other, f"v{other} loaded", 120)
        MlflowClient().set_registered_model_alias(PIPELINE, "champion", current)
        wait_for(lambda: follower.get(PIPELINE).version == current, f"v{current} back", 120)
    finally:
        follower.stop()


def _logged(settings: Any) -> Any:
    from trainyard.data.predictions import read_predictions

    return read_predictions(settings, PIPELINE, [datetime.now(UTC).date()])


def test_predictions_reach_s3_in_the_prediction_log_layout(server, settings) -> None:
    frame = churn_rows(FLUSH_ROWS, date(2026, 3, 2))
    with _client(server) as client:
        response = client.post(f"/predict/{PIPELINE}", json={"records": feature_records(frame)})
    assert response.status_code == 200
    ids = set(frame["customer_id"])
    wait_for(lambda: ids <= set(_logged(settings)["row_id"]), "rows in S3", 60)
    logged = _logged(settings).set_index("row_id").loc[frame["customer_id"]]
    assert (logged["source"] == "online").all()
    assert (logged["model_name"] == PIPELINE).all()
    assert logged["prediction"].tolist() == response.json()["predictions"]
    assert logged["tenure_months"].tolist() == frame["tenure_months"].astype(float).tolist()
    joined = logged.join(frame.set_index("customer_id")["churned"])
    assert joined["churned"].notna().all()


def test_an_s3_outage_keeps_serving_and_the_backlog_is_retried(server, settings, s3_proxy) -> None:
    frame = churn_rows(FLUSH_ROWS + 5, date(2026, 3, 3))
    failures_before = _metric(server, "trainyard_serving_prediction_log_flush_failures_total")
    with s3_proxy.fault("refuse"), _client(server) as client:
        response = client.post(f"/predict/{PIPELINE}", json={"records": feature_records(frame)})
        assert response.status_code == 200
        wait_for(
            lambda: (
                _metric(server, "trainyard_serving_prediction_log_flush_failures_total")
                > failures_before
            ),
            "a failed flush",
            120,
        )
        assert _metric(server, "trainyard_serving_prediction_log_backlog_rows") >= len(frame)
        assert client.post(
            f"/predict/{PIPELINE}", json={"records": feature_records(frame.head(2))}
        ).is_success
    ids = set(frame["customer_id"])
    wait_for(lambda: ids <= set(_logged(settings)["row_id"]), "the backlog in S3", 120)


@pytest.mark.last_in_module
def test_sigterm_flushes_the_buffer(server, settings) -> None:
    # A request that reaches the flush threshold is flushed at once; after that flush the
    # buffer is empty, so the second attempt surely stays buffered until the signal.
    for day in (4, 5):
        frame = churn_rows(3, date(2026, 3, day))
        with _client(server) as client:
            assert client.post(
                f"/predict/{PIPELINE}", json={"records": feature_records(frame)}
            ).is_success
        time.sleep(2)
        if _metric(server, "trainyard_serving_prediction_log_backlog_rows") >= len(frame):
            break
    assert not set(frame["customer_id"]) & set(_logged(settings)["row_id"])
    server["process"].send_signal(signal.SIGTERM)
    # Uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM.
    assert server["process"].wait(60) in (0, -signal.SIGTERM)
    assert set(frame["customer_id"]) <= set(_logged(settings)["row_id"])
    log = Path(server["log"]).read_text()
    assert "Application shutdown complete" in log and "could not be written" not in log


def test_rows_s3_refuses_at_shutdown_wait_on_disk_and_reach_s3_after_a_restart(
    stack, registry, s3_proxy, settings, tmp_path
) -> None:
    """S3 down (the server's connections to it refused) through a SIGTERM: the buffered rows
    are spilled to local disk, counted, and the next server on that folder uploads them."""
    import pyarrow.parquet as pq

    frame = churn_rows(7, date(2026, 3, 7))
    ids = set(frame["customer_id"])
    first, url, first_log = _start(registry, s3_proxy, tmp_path)
    try:
        with s3_proxy.fault("refuse"):
            with _client({"url": url}) as client:
                answered = client.post(
                    f"/predict/{PIPELINE}", json={"records": feature_records(frame)}
                )
            assert answered.status_code == 200
            first.send_signal(signal.SIGTERM)
            assert first.wait(120) in (0, -signal.SIGTERM)
            spilled = sorted((tmp_path / "spill").glob(f"{PIPELINE}/date=*/*.parquet"))
            on_disk = [pq.read_table(path).to_pandas() for path in spilled]
            assert sum(len(part) for part in on_disk) == len(frame)
            assert ids == {row for part in on_disk for row in part["row_id"]}
            assert not ids & set(_logged(settings)["row_id"])
    finally:
        if first.poll() is None:
            first.kill()
    log = first_log.read_text()
    assert "could not be written" not in log and "they wait in" in log

    second, url, _ = _start(registry, s3_proxy, tmp_path)
    try:
        wait_for(lambda: ids <= set(_logged(settings)["row_id"]), "the spilled rows in S3", 120)
        server = {"url": url}
        assert _metric(server, "trainyard_serving_prediction_log_recovered_rows_total") == len(
            frame
        )
        wait_for(lambda: not any((tmp_path / "spill").rglob("*.parquet")), "spill emptied", 30)
        logged = _logged(settings).set_index("row_id").loc[frame["customer_id"]]
        assert logged["prediction"].tolist() == answered.json()["predictions"]
    finally:
        second.terminate()
        second.wait(60)

"""The model server app built in this process (``create_app``) on the session's MLflow and S3.

tests/integration/test_serving.py runs ``trainyard serve`` as a process, end to end; this module
drives the same app through FastAPI's TestClient, where the follower and the prediction log can
be stepped directly: paths a process cannot reach cheaply (a server not ready yet, a champion
alias removed, bodies streamed without a length, webhook refusals, an S3 write failing and its
batch retried under the same key, the backlog bound) are checked here, deterministically.
Its S3 endpoint is a fault proxy (tests/faults.py), so a test can fail the log's writes only.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults import FaultProxy
from tests.support import churn_rows, feature_records, serving_pipelines

PIPELINE = "churn_in_process"
UNTRAINED = "churn_in_process_untrained"
API_KEY = "in-process-key-not-a-secret"
WEBHOOK_SECRET = "in-process-webhook-secret"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def registry(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return serving_pipelines(tmp_path_factory.mktemp("in-process-pipelines"), PIPELINE, UNTRAINED)


@pytest.fixture(scope="module")
def s3_proxy(stack: Any) -> Iterator[FaultProxy]:
    proxy = FaultProxy(stack.s3_url)
    yield proxy
    proxy.close()


def _app(settings: Any, registry: dict[str, Any], s3_proxy: FaultProxy, **serving: Any) -> Any:
    """The app serving both pipelines; nothing runs on a timer (polls and flushes are stepped)."""
    from trainyard.core.settings import ServingSettings
    from trainyard.serving.app import create_app

    options = {
        "api_key": API_KEY,
        "poll_seconds": 3600.0,
        "log_flush_seconds": 3600.0,
        "log_flush_rows": 1_000_000,
        "max_body_bytes": MAX_BODY,
        "log_spill_dir": Path(tempfile.mkdtemp(prefix="trainyard-test-spill-")),
        **serving,
    }
    # Short S3 bounds (tests/faults.py's FAST_FAILURES), so a refused write fails in seconds.
    s3 = {"s3_endpoint_url": s3_proxy.url, "service_timeout_seconds": 2, "service_retries": 1}
    return create_app(
        dataclasses.replace(settings, **s3),
        ServingSettings(**options),
        [registry["spec"], registry["untrained_spec"]],
    )


def _client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"})


def _loaded(app: Any) -> None:
    """Wait for the lifespan's first load (the follower's thread), at most two minutes."""
    from trainyard_dev.services import wait_for

    wait_for(lambda: not app.state.follower.missing(), "the champion loaded", 120)


def _metric(client: Any, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    pattern = rf"^{name}{re.escape(labels)} ([0-9.e+-]+)$" if labels else rf"^{name} ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _online_keys(settings: Any, pipeline: str) -> set[str]:
    from trainyard.core import storage
    from trainyard.data.predictions import prefix

    folder = prefix(settings, pipeline, "online", datetime.now(UTC).date())
    bucket, _, key = folder.removeprefix("s3://").partition("/")
    pages = (
        storage.client(settings)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=f"{key}/")
    )
    return {f"s3://{bucket}/{item['Key']}" for page in pages for item in page.get("Contents", [])}


def test_not_ready_until_the_first_load_then_served(settings, registry, s3_proxy) -> None:
    # No lifespan: nothing loads until the follower is stepped.
    app = _app(settings, registry, s3_proxy)
    client = _client(app)
    record = feature_records(churn_rows(1))[0]
    waiting = client.get("/ready")
    early = client.post(f"/predict/{PIPELINE}", json={"records": [record]})
    assert waiting.status_code == 503
    assert waiting.json() == {
        "status": "not ready",
        "loading": [PIPELINE, UNTRAINED],
        "no_champion": [],
    }
    assert early.status_code == 503
    assert early.json()["detail"] == f"pipeline {PIPELINE!r} has no champion loaded yet"

    assert app.state.follower.refresh(PIPELINE) is True
    assert app.state.follower.refresh(UNTRAINED) is False
    # Re-reading an alias that did not move loads nothing.
    assert app.state.follower.refresh(PIPELINE) is False
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["no_champion"] == [UNTRAINED]
    assert client.post(f"/predict/{PIPELINE}", json={"records": [record]}).status_code == 200
    assert (
        _metric(
            client, "trainyard_serving_errors_total", f'{{kind="not_ready",pipeline="{PIPELINE}"}}'
        )
        == 1
    )
    assert _metric(
        client, "trainyard_serving_model_version", f'{{pipeline="{PIPELINE}"}}'
    ) == float(registry["v1"])


def test_generated_row_ids_and_mlflow_shapes(settings, registry, s3_proxy) -> None:
    app = _app(settings, registry, s3_proxy)
    frame = churn_rows(4)
    features = frame.drop(columns=["event_date", "churned", "customer_id"])
    with _client(app) as client:
        _loaded(app)
        by_records = client.post(
            f"/predict/{PIPELINE}",
            json={"dataframe_records": json.loads(features.to_json(orient="records"))},
            headers={"X-Request-Id": "req-7"},
        )
        by_split = client.post(
            f"/predict/{PIPELINE}",
            json={"dataframe_split": json.loads(features.to_json(orient="split", index=False))},
        )
        rows = _metric(
            client, "trainyard_serving_predicted_rows_total", f'{{pipeline="{PIPELINE}"}}'
        )
        ok = _metric(
            client, "trainyard_serving_requests_total", f'{{pipeline="{PIPELINE}",status="200"}}'
        )
    assert by_records.status_code == 200, by_records.text
    # Records without the id column get ids made of the request id and their position.
    assert by_records.json()["row_ids"] == [f"req-7-{i}" for i in range(4)]
    split_ids = by_split.json()["row_ids"]
    assert len(set(split_ids)) == 4 and all(i.endswith(f"-{n}") for n, i in enumerate(split_ids))
    assert by_split.json()["predictions"] == by_records.json()["predictions"]
    assert rows == 8 and ok == 2


def test_refusals_are_answered_in_one_line_and_counted(settings, registry, s3_proxy) -> None:
    app = _app(settings, registry, s3_proxy)
    record = feature_records(churn_rows(1))[0]
    padding = b" " * (MAX_BODY + 1)

    def streamed() -> Iterator[bytes]:
        # No Content-Length: the server must stop reading past the limit on its own.
        yield b'{"records": ['
        yield padding
        yield b"]}"

    with _client(app) as client:
        _loaded(app)
        anonymous = client.post(
            f"/predict/{PIPELINE}", json={"records": [record]}, headers={"Authorization": ""}
        )
        basic = client.post(
            f"/predict/{PIPELINE}",
            json={"records": [record]},
            headers={"Authorization": f"Basic {API_KEY}"},
        )
        models = client.get("/models", headers={"Authorization": "Bearer nope"})
        declared = client.post(f"/predict/{PIPELINE}", content=b'{"records": [' + padding + b"]}")
        chunked = client.post(f"/predict/{PIPELINE}", content=streamed())
        missing = client.post(
            f"/predict/{PIPELINE}",
            json={"dataframe_records": [{k: v for k, v in record.items() if k != "contract"}]},
        )
        unknown = client.post("/predict/nope", json={"records": [record]})
        metrics = client.get("/metrics").text
        health = client.get("/health", headers={"Authorization": ""})
    assert [anonymous.status_code, basic.status_code, models.status_code] == [401, 401, 401]
    assert declared.status_code == 413 and chunked.status_code == 413
    assert chunked.json()["detail"] == f"body: larger than {MAX_BODY} bytes"
    assert missing.status_code == 422
    assert missing.json()["detail"].startswith("dataframe_records[0]: missing field 'contract'")
    assert unknown.status_code == 404
    assert (
        unknown.json()["detail"]
        == f"no pipeline 'nope' served here; served: {[PIPELINE, UNTRAINED]}"
    )
    assert health.json() == {"status": "ok"}
    errors = {
        kind: float(value)
        for kind, value in re.findall(
            rf'^trainyard_serving_errors_total{{kind="(\w+)",pipeline="{PIPELINE}"}} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    }
    assert errors == {"unauthorized": 2.0, "too_large": 2.0, "invalid": 1.0}


def test_the_alias_is_followed_and_a_removed_champion_keeps_serving(
    settings, registry, s3_proxy
) -> None:
    from mlflow import MlflowClient

    from trainyard.core.tracking import CHAMPION

    app = _app(settings, registry, s3_proxy)
    follower = app.state.follower
    mlflow = MlflowClient()
    record = feature_records(churn_rows(1))[0]
    with _client(app) as client:
        _loaded(app)
        try:
            mlflow.set_registered_model_alias(PIPELINE, CHAMPION, registry["v2"])
            assert follower.refresh(PIPELINE) is True
            promoted = client.post(f"/predict/{PIPELINE}", json={"records": [record]}).json()
            mlflow.delete_registered_model_alias(PIPELINE, CHAMPION)
            assert follower.refresh(PIPELINE) is False
            orphaned = client.post(f"/predict/{PIPELINE}", json={"records": [record]})
            ready = client.get("/ready").json()
            described = client.get("/models").json()["models"]
        finally:
            mlflow.set_registered_model_alias(PIPELINE, CHAMPION, registry["v1"])
        assert follower.refresh(PIPELINE) is True
        swaps = _metric(client, "trainyard_serving_model_swaps_total", f'{{pipeline="{PIPELINE}"}}')
        version = _metric(client, "trainyard_serving_model_version", f'{{pipeline="{PIPELINE}"}}')
    assert promoted["model_version"] == registry["v2"]
    # With no champion in the registry the last one keeps answering, and readiness holds.
    assert orphaned.status_code == 200 and orphaned.json()["model_version"] == registry["v2"]
    assert ready == {"status": "ready", "no_champion": [UNTRAINED]}
    (model,) = described
    assert model["version"] == registry["v2"] and model["alias"] == CHAMPION
    assert swaps == 3 and version == float(registry["v1"])


def test_webhook_deliveries_are_verified_before_a_nudge(settings, registry, s3_proxy) -> None:
    from trainyard.serving.webhooks import signature

    app = _app(settings, registry, s3_proxy, webhook_secret=WEBHOOK_SECRET)
    client = _client(app)  # no lifespan: no webhook is registered on the MLflow server

    def deliver(payload: Any, secret: str = WEBHOOK_SECRET, age: int = 0) -> Any:
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        stamp = str(int(time.time()) - age)
        headers = {
            "X-MLflow-Delivery-Id": "delivery-1",
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": signature(secret, "delivery-1", stamp, body),
        }
        return client.post("/webhooks/mlflow", content=body, headers=headers)

    moved = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": PIPELINE, "alias": "champion", "version": registry["v1"]},
    }
    other = {**moved, "data": {**moved["data"], "name": "someone_elses_model"}}
    assert deliver(moved).json() == {"followed": True}
    assert deliver(other).json() == {"followed": False}
    forged = deliver(moved, secret="guessed")
    stale = deliver(moved, age=3600)
    garbled = deliver(b"{not json")
    unsigned = client.post("/webhooks/mlflow", json=moved)
    assert (
        forged.status_code == 401 and forged.json()["detail"] == "X-MLflow-Signature does not match"
    )
    assert stale.status_code == 401 and "X-MLflow-Timestamp" in stale.json()["detail"]
    assert unsigned.status_code == 401
    assert garbled.status_code == 422 and garbled.json()["detail"] == "body: not valid JSON"
    oversized = client.post("/webhooks/mlflow", content=b" " * (64 * 1024 + 1))
    assert oversized.status_code == 413
    disabled = _client(_app(settings, registry, s3_proxy)).post("/webhooks/mlflow", json=moved)
    assert disabled.status_code == 404


def test_a_failed_flush_is_retried_under_the_same_key_and_shutdown_flushes(
    settings, registry, s3_proxy
) -> None:
    from trainyard.data.predictions import online_uri, read_predictions

    app = _app(settings, registry, s3_proxy)
    log = app.state.prediction_log
    first, second = churn_rows(6, date(2026, 4, 1)), churn_rows(5, date(2026, 4, 2))
    before = _online_keys(settings, PIPELINE)
    with _client(app) as client:
        _loaded(app)
        answered = client.post(f"/predict/{PIPELINE}", json={"records": feature_records(first)})
        with s3_proxy.fault("refuse"):
            assert log.flush() == 0
            backlog = _metric(client, "trainyard_serving_prediction_log_backlog_rows")
            failures = _metric(client, "trainyard_serving_prediction_log_flush_failures_total")
        assert _online_keys(settings, PIPELINE) == before
        assert log.flush() == len(first)
        written = _online_keys(settings, PIPELINE) - before
        client.post(f"/predict/{PIPELINE}", json={"records": feature_records(second)})
        assert log.backlog_rows() == len(second)
    # Leaving the client ran the lifespan's shutdown, which flushed the rest.
    assert log.backlog_rows() == 0
    assert backlog == len(first) and failures == 1
    # The batch cut before the failure kept its flush id: one file, named as first intended.
    today = datetime.now(UTC).date()
    assert written == {online_uri(settings, PIPELINE, today, f"{log.instance_id}-000001")}
    assert len(_online_keys(settings, PIPELINE) - before) == 2
    logged = read_predictions(settings, PIPELINE, [today]).set_index("row_id")
    ids = list(first["customer_id"]) + list(second["customer_id"])
    assert set(ids) <= set(logged.index)
    mine = logged.loc[first["customer_id"]]
    assert (mine["run_id"] == log.instance_id).all() and (mine["source"] == "online").all()
    assert mine["prediction"].tolist() == answered.json()["predictions"]


def test_a_full_backlog_drops_the_oldest_rows(settings, registry, s3_proxy) -> None:
    from trainyard.data.predictions import read_predictions

    app = _app(settings, registry, s3_proxy, log_max_backlog_rows=5)
    log = app.state.prediction_log
    old, new = churn_rows(4, date(2026, 4, 3)), churn_rows(3, date(2026, 4, 4))
    with _client(app) as client:
        _loaded(app)
        with s3_proxy.fault("refuse"):
            client.post(f"/predict/{PIPELINE}", json={"records": feature_records(old)})
            assert log.flush() == 0
            client.post(f"/predict/{PIPELINE}", json={"records": feature_records(new)})
            assert log.flush() == 0
            dropped = _metric(client, "trainyard_serving_prediction_log_dropped_rows_total")
        assert log.flush() == len(new)
    assert dropped == len(old)
    logged = set(read_predictions(settings, PIPELINE, [datetime.now(UTC).date()])["row_id"])
    assert set(new["customer_id"]) <= logged
    assert not set(old["customer_id"]) & logged

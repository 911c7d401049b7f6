"""The model server (FastAPI): every served pipeline's champion behind one HTTP API.

- ``POST /predict/<pipeline>``: JSON records (or MLflow's ``dataframe_split`` /
  ``dataframe_records``) → predictions, class probabilities, row ids and the model version;
- ``GET /health``: the process answers; ``GET /ready``: every served pipeline that has a
  champion in the registry has it loaded (503 naming those still loading; pipelines without
  any champion yet are listed, and do not hold readiness back);
- ``GET /models``: name, version, alias, fingerprint and load time of each served model;
- ``GET /metrics``: Prometheus text (:mod:`trainyard.serving.metrics`);
- ``POST /webhooks/mlflow``: MLflow registry webhooks (HMAC-signed), so alias moves are followed
  at once instead of at the next poll.

With ``TRAINYARD_SERVING_API_KEY`` set, ``/predict`` and ``/models`` need
``Authorization: Bearer <key>`` (401 otherwise); health, readiness and metrics stay open for
the orchestrator and Prometheus. One process serves every pipeline: the models are small, and
one process means one alias follower and one log writer per host. Run one per pipeline by
setting ``TRAINYARD_SERVING_PIPELINES``. Predictions run in a bounded pool of threads
(``TRAINYARD_SERVING_PREDICT_THREADS``), off the event loop, which stays free to read requests
and answer ``/health``, ``/ready`` and ``/metrics`` meanwhile; requests that wait for a thread
are predicted together (:mod:`trainyard.serving.batching`).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from trainyard.serving.batching import MicroBatcher
from trainyard.serving.metrics import ServingMetrics
from trainyard.serving.models import ChampionFollower, ServedModel
from trainyard.serving.prediction_log import PredictionLog, Served
from trainyard.serving.schema import RequestError, parse_request

if TYPE_CHECKING:
    from trainyard.core.settings import ServingSettings, Settings
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)

#: MLflow's webhook payloads are a few hundred bytes.
WEBHOOK_MAX_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """The request body is over ``max_body_bytes``."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) one larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _plain(values: Any) -> list[Any]:
    """A NumPy array as JSON-ready Python values."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def answer(model: ServedModel, row_ids: list[str], predictions: Any, probabilities: Any) -> dict:
    """The response body of a prediction (pure)."""
    body: dict[str, Any] = {
        "pipeline": model.pipeline,
        "model_name": model.registered_name,
        "model_version": model.version,
        "row_ids": row_ids,
        "predictions": _plain(predictions),
    }
    if probabilities is not None and model.classes is not None:
        labels = [str(label) for label in model.classes]
        body["probabilities"] = [
            dict(zip(labels, row, strict=True)) for row in _plain(probabilities)
        ]
    return body


def create_app(
    settings: Settings,
    serving: ServingSettings,
    specs: list[PipelineSpec],
) -> FastAPI:
    """The server for ``specs`` (started and stopped by the app's lifespan).

    Args:
        settings: S3 (the prediction log) and buckets.
        serving: Port, API key, polling, webhook and log settings.
        specs: The pipelines to serve.

    Returns:
        The FastAPI app; ``app.state`` holds the follower, the log and the metrics.
    """
    metrics = ServingMetrics()

    def on_change(model: ServedModel) -> None:
        metrics.model_version.labels(model.pipeline).set(float(model.version))
        metrics.model_swaps.labels(model.pipeline).inc()

    follower = ChampionFollower(
        specs,
        serving.poll_seconds,
        on_change=on_change,
        on_failure=lambda pipeline: metrics.model_load_failures.labels(pipeline).inc(),
    )
    batcher = MicroBatcher(serving.predict_threads, serving.batch_max_rows, serving.native_threads)
    instance_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    prediction_log = PredictionLog(
        settings,
        metrics,
        instance_id,
        flush_seconds=serving.log_flush_seconds,
        flush_rows=serving.log_flush_rows,
        max_backlog_rows=serving.log_max_backlog_rows,
        spill_dir=serving.log_spill_dir,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if serving.api_key is None:
            log.warning("TRAINYARD_SERVING_API_KEY is not set: /predict is open to anyone")
        if serving.webhook_url is not None:
            from trainyard.serving.webhooks import register_webhook

            register_webhook(serving.webhook_url, serving.webhook_secret or "")
        follower.start()
        prediction_log.start()
        yield
        follower.stop()
        batcher.shutdown()
        prediction_log.close()

    app = FastAPI(title="trainyard model server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.follower = follower
    app.state.prediction_log = prediction_log
    app.state.metrics = metrics

    def authorized(request: Request) -> bool:
        if serving.api_key is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), serving.api_key.encode()
        )

    def refused(status: int, detail: str, pipeline: str, kind: str) -> JSONResponse:
        metrics.requests.labels(pipeline, str(status)).inc()
        metrics.errors.labels(pipeline, kind).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    @app.post("/predict/{pipeline}")
    async def predict(pipeline: str, request: Request) -> Response:
        started = time.perf_counter()
        if not authorized(request):
            return refused(
                401,
                "missing or wrong API key (Authorization: Bearer <key>)",
                pipeline,
                "unauthorized",
            )
        if pipeline not in follower.specs:
            served = sorted(follower.specs)
            return JSONResponse(
                {"detail": f"no pipeline {pipeline!r} served here; served: {served}"},
                status_code=404,
            )
        model = follower.get(pipeline)
        if model is None:
            state = (
                "has no champion in the registry"
                if pipeline in follower.without_champion()
                else "has no champion loaded yet"
            )
            return refused(503, f"pipeline {pipeline!r} {state}", pipeline, "not_ready")
        try:
            body = await read_body(request, serving.max_body_bytes)
            parsed = parse_request(body, model.columns, model.id_column)
        except BodyTooLarge:
            return refused(
                413, f"body: larger than {serving.max_body_bytes} bytes", pipeline, "too_large"
            )
        except RequestError as error:
            return refused(422, str(error), pipeline, "invalid")
        try:
            predictions, probabilities = await batcher.predict(model, parsed)
        except Exception as error:  # noqa: BLE001 (answer one line, never a traceback)
            log.exception("%s v%s failed to predict", model.registered_name, model.version)
            reason = str(error).splitlines()[0] if str(error) else ""
            return refused(
                500, f"the model failed: {type(error).__name__}: {reason}", pipeline, "model"
            )
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        row_ids = [
            given if given is not None else f"{request_id}-{index}"
            for index, given in enumerate(parsed.ids)
        ]
        prediction_log.record(
            Served(
                pipeline=pipeline,
                model_name=model.registered_name,
                model_version=model.version,
                scored_at=datetime.now(UTC),
                row_ids=row_ids,
                features=parsed.columns,
                predictions=predictions,
                probabilities=probabilities,
                classes=model.classes,
            )
        )
        metrics.requests.labels(pipeline, "200").inc()
        metrics.rows.labels(pipeline).inc(len(row_ids))
        metrics.latency.labels(pipeline).observe(time.perf_counter() - started)
        # msgspec, not JSONResponse's json.dumps: 0.08 ms instead of 1.04 ms for 1,000 rows.
        return Response(
            msgspec.json.encode(answer(model, row_ids, predictions, probabilities)),
            media_type="application/json",
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        loading, absent = follower.missing(), follower.without_champion()
        if loading:
            return JSONResponse(
                {"status": "not ready", "loading": loading, "no_champion": absent},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "no_champion": absent})

    @app.get("/models")
    async def models(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "missing or wrong API key"}, status_code=401)
        return JSONResponse(
            {
                "models": [model.describe() for model in follower.served()],
                "loading": follower.missing(),
                "no_champion": follower.without_champion(),
            }
        )

    @app.post("/webhooks/mlflow")
    async def mlflow_webhook(request: Request) -> JSONResponse:
        import json

        from trainyard.serving.webhooks import champion_moved, verify

        if serving.webhook_secret is None:
            return JSONResponse({"detail": "webhooks are not enabled here"}, status_code=404)
        try:
            body = await read_body(request, WEBHOOK_MAX_BYTES)
        except BodyTooLarge:
            return JSONResponse({"detail": "body too large"}, status_code=413)
        problem = verify(serving.webhook_secret, request.headers, body, time.time())
        if problem is not None:
            log.warning("refused a webhook delivery: %s", problem)
            return JSONResponse({"detail": problem}, status_code=401)
        try:
            name = champion_moved(json.loads(body))
        except ValueError:
            return JSONResponse({"detail": "body: not valid JSON"}, status_code=422)
        followed = name is not None and follower.nudge(name)
        metrics.webhook_deliveries.labels(str(followed).lower()).inc()
        return JSONResponse({"followed": followed})

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

"""The model server's pure parts: request checking, webhook signatures, log rows, settings."""

from __future__ import annotations

import io
import json
import math
import os
import signal
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from trainyard.core.settings import ServingSettings
from trainyard.serving.models import ServedModel, features_frame, transform_steps
from trainyard.serving.schema import Column, ParsedRequest, RequestError, parse_request
from trainyard.serving.webhooks import champion_moved, signature, verify

COLUMNS = (
    Column("tenure", "number"),
    Column("plan", "string"),
    Column("calls", "integer", required=False),
)


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_records_and_mlflow_shapes_parse_alike() -> None:
    records = [{"tenure": 3, "plan": "a", "calls": 1, "id": "c1"}, {"tenure": 1.5, "plan": None}]
    split = {
        "dataframe_split": {
            "columns": ["tenure", "plan", "calls", "id"],
            "data": [[3, "a", 1, "c1"], [1.5, None, None, None]],
        }
    }
    ours = parse_request(_body({"records": records}), COLUMNS, id_column="id")
    theirs = parse_request(_body(split), COLUMNS, id_column="id")
    mlflow_records = parse_request(_body({"dataframe_records": records}), COLUMNS, "id")
    assert _plain(ours) == {"tenure": [3.0, 1.5], "plan": ["a", None], "calls": [1, None]}
    assert ours.columns["tenure"].dtype == np.float64  # numbers as training had them
    assert ours.ids == ["c1", None] and ours.rows == 2
    assert _plain(theirs) == _plain(ours) == _plain(mlflow_records)
    assert theirs.ids == ours.ids == mlflow_records.ids


def _plain(parsed: ParsedRequest) -> dict[str, list]:
    """Parsed columns as lists (NaN, a number column's null, as None) for comparisons."""
    return {
        name: [None if value != value else value for value in np.asarray(values).tolist()]
        if isinstance(values, np.ndarray)
        else values
        for name, values in parsed.columns.items()
    }


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff", "body: not valid JSON"),
        (b"[1]", "body: expected"),
        (_body({"records": {}}), "records: expected a list of objects"),
        (_body({"records": []}), "records: no records to predict"),
        (_body({"records": [3]}), "records[0]: expected an object of column values"),
        (_body({"records": [{"plan": "a"}]}), "records[0]: missing field 'tenure'"),
        (
            _body({"records": [{"tenure": 1, "plan": "a"}, {"tenure": "x", "plan": "a"}]}),
            "records[1].tenure: expected a number, got 'x'",
        ),
        (_body({"records": [{"tenure": True, "plan": "a"}]}), "records[0].tenure: expected a"),
        (_body({"records": [{"tenure": 1, "plan": 7}]}), "records[0].plan: expected a string"),
        (
            _body({"records": [{"tenure": 1, "plan": "a", "calls": 1.5}]}),
            "records[0].calls: expected an integer",
        ),
        (_body({"dataframe_split": []}), "dataframe_split: expected an object"),
        (
            _body({"dataframe_split": {"columns": "tenure", "data": []}}),
            "dataframe_split.columns",
        ),
        (
            _body({"dataframe_split": {"columns": ["tenure"], "data": [[1, 2]]}}),
            "dataframe_split.data[0]: expected a list of 1 values",
        ),
    ],
)
def test_bad_bodies_name_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(RequestError) as error:
        parse_request(payload, COLUMNS)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_long_values_are_cut_in_the_message() -> None:
    with pytest.raises(RequestError) as error:
        parse_request(_body({"records": [{"tenure": "x" * 500, "plan": "a"}]}), COLUMNS)
    assert len(str(error.value)) < 120


def _walked(records: list, columns: tuple[Column, ...]) -> str | None:
    """The first problem in ``records`` as a record-by-record, field-by-field walk meets it
    (what the column-wise checks must report), or None when every record fits."""

    def fits(kind: str, value: object) -> bool:
        if value is None:
            return True
        if kind == "number":
            try:
                return type(value) in (int, float) and math.isfinite(value)
            except OverflowError:
                return False
        return type(value) is {"integer": int, "string": str, "boolean": bool}[kind]

    for index, record in enumerate(records):
        if not isinstance(record, dict):
            return f"records[{index}]: expected an object of column values"
        for column in columns:
            if column.name not in record:
                if column.required:
                    return f"records[{index}]: missing field {column.name!r}"
            elif not fits(column.kind, record[column.name]):
                return f"records[{index}].{column.name}: expected"
    return None


def test_column_checks_report_what_a_record_walk_meets_first() -> None:
    """Random bodies (seeded): the problem named is the first one in record order, then the
    model's column order, whichever column it is in; bodies without one parse to their values."""
    import random

    generator = random.Random(7)
    pool = [1, 2.5, -0.0, None, "x", "", True, False, float("nan"), float("inf"), 10**400, [1]]
    for _ in range(600):
        records: list = []
        for _ in range(generator.randint(1, 5)):
            if generator.random() < 0.05:
                records.append(generator.choice([3, "r", None, []]))
                continue
            record = {}
            for column in COLUMNS:
                if generator.random() < 0.9:
                    # Mostly fitting values, so that problems are sparse and land anywhere.
                    fitting = {"number": [4, 0.5], "string": ["a"], "integer": [2]}[column.kind]
                    values = fitting if generator.random() < 0.8 else pool
                    record[column.name] = generator.choice(values)
            records.append(record)
        expected = _walked(records, COLUMNS)
        body = json.dumps({"records": records}).encode()  # NaN / Infinity as Python writes them
        if expected is None:
            parsed = parse_request(body, COLUMNS)
            assert _plain(parsed)["plan"] == [record.get("plan") for record in records]
            assert _plain(parsed)["calls"] == [record.get("calls") for record in records]
            assert _plain(parsed)["tenure"] == [
                None if record["tenure"] is None else float(record["tenure"]) for record in records
            ]
            continue
        with pytest.raises(RequestError) as error:
            parse_request(body, COLUMNS)
        assert str(error.value).startswith(expected), (records, str(error.value))


def test_a_large_split_names_the_row_of_its_one_bad_value() -> None:
    data = [[float(row), "a", row] for row in range(1000)]
    assert parse_request(
        _body({"dataframe_split": {"columns": ["tenure", "plan", "calls"], "data": data}}), COLUMNS
    ).columns["tenure"].tolist() == [float(row) for row in range(1000)]
    data[637][1] = 5
    data[901][0] = "9"
    split = {"columns": ["tenure", "plan", "calls"], "data": data}
    with pytest.raises(
        RequestError, match=r"^dataframe_split\[637\]\.plan: expected a string, got 5$"
    ):
        parse_request(_body({"dataframe_split": split}), COLUMNS)
    with pytest.raises(RequestError, match=r"^dataframe_split\[0\]: missing field 'plan'$"):
        parse_request(_body({"dataframe_split": {"columns": ["tenure"], "data": [[1]]}}), COLUMNS)
    for literal in (b"NaN", b"Infinity", b"1" + b"0" * 400):
        body = b'{"records": [{"tenure": %s, "plan": "a"}]}' % literal
        with pytest.raises(RequestError, match=r"^records\[0\]\.tenure: expected a finite number"):
            parse_request(body, COLUMNS)


def test_webhook_signature_follows_mlflow() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = b'{"entity": "model_version_alias"}'
    assert signature("s3cret", "d1", "1700000000", body) == _generate_hmac_signature(
        "s3cret", "d1", "1700000000", body.decode()
    )


def test_webhook_deliveries_are_verified() -> None:
    body = b'{"x": 1}'
    headers = {
        "x-mlflow-delivery-id": "d1",
        "x-mlflow-timestamp": "1000",
        "x-mlflow-signature": signature("k", "d1", "1000", body),
    }
    assert verify("k", headers, body, now=1010) is None
    assert "does not match" in verify("other", headers, body, now=1010)
    assert "does not match" in verify("k", headers, body + b" ", now=1010)
    assert "not within" in verify("k", headers, body, now=1000 + 3600)
    assert "missing" in verify("k", {}, body, now=1010)


def test_only_champion_alias_events_nudge() -> None:
    event = {"entity": "model_version_alias", "data": {"name": "churn", "alias": "champion"}}
    assert champion_moved(event) == "churn"
    assert champion_moved({**event, "data": {"name": "churn", "alias": "previous"}}) is None
    assert champion_moved({**event, "entity": "model_version"}) is None
    assert champion_moved([]) is None


def test_log_rows_follow_the_prediction_layout() -> None:
    from trainyard.data.predictions import BASE_COLUMNS
    from trainyard.serving.prediction_log import Served, join_by_version, log_frame

    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    served = [
        Served(
            "churn", "churn", "3", at, ["a", "b"], {"x": np.array([1.0, np.nan])},
            np.array([1, 0]), np.array([[0.2, 0.8], [0.9, 0.1]]), (0, 1),
        ),
        Served(
            "churn", "churn", "4", at, ["c"], {"x": np.array([2.5])},
            np.array([1]), np.array([[0.4, 0.6]]), (0, 1),
        ),
    ]  # fmt: skip
    frame = log_frame(join_by_version(served), "instance-1")
    assert list(frame.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert frame["row_id"].tolist() == ["a", "b", "c"]
    assert frame["model_version"].tolist() == ["3", "3", "4"]
    assert frame["proba_1"].tolist() == [0.8, 0.1, 0.6]
    assert frame["x"].tolist()[0] == 1.0 and np.isnan(frame["x"].tolist()[1])
    assert set(frame["source"]) == {"online"} and set(frame["run_id"]) == {"instance-1"}


def _log_frame_before_the_encoder_process(served: list, instance_id: str) -> pd.DataFrame:
    """The flush's frame as the server built it in process until the encoder process (6949cbd),
    kept here as the reference the written files must still match."""
    from trainyard.data.predictions import prediction_frame
    from trainyard.serving.schema import join_columns

    by_version: dict = {}
    for item in served:
        by_version.setdefault((item.model_name, item.model_version, item.classes), []).append(item)
    parts = []
    for (model_name, model_version, classes), items in by_version.items():
        with_probabilities = classes is not None and all(
            item.probabilities is not None for item in items
        )
        frame = prediction_frame(
            [row_id for item in items for row_id in item.row_ids],
            np.concatenate([np.asarray(item.predictions) for item in items]),
            np.concatenate([np.asarray(item.probabilities) for item in items])
            if with_probabilities
            else None,
            classes,
            model_name=model_name,
            model_version=model_version,
            run_id=instance_id,
            source="online",
            scored_at=pd.to_datetime([item.scored_at for item in items], utc=True).repeat(
                [item.rows for item in items]
            ),
        )
        features = pd.DataFrame(join_columns([item.features for item in items]))
        parts.append(
            pd.concat([frame, features.drop(columns=frame.columns, errors="ignore")], axis=1)
        )
    return pd.concat(parts, ignore_index=True)


def test_encoded_log_files_keep_the_schema_and_rows_of_the_in_process_flush() -> None:
    """The encoder process writes what the in-process flush wrote: same Arrow schema (pandas
    metadata included) and same rows, across versions, classes, kinds of column and nulls."""
    import pyarrow.parquet as pq

    from trainyard.core import storage
    from trainyard.serving.prediction_log import Encoder, Served, encode_batch, join_by_version

    at = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def request(version: str, ids: list, rows: int, classes: tuple | None, **features) -> Served:
        probabilities = None if classes is None else np.full((rows, len(classes)), 0.5)
        return Served(
            "churn", "churn", version, at, ids, features, np.arange(rows), probabilities, classes
        )

    served = [
        request("3", ["a", "b"], 2, (0, 1), x=np.array([1.0, np.nan]), city=["oslo", None],
                calls=[1, 2], flag=[True, None]),
        request("3", ["c"], 1, (0, 1), x=np.array([2.5]), city=["rome"], calls=[None],
                flag=[False]),
        request("4", ["d"], 1, (0, 1, 2), x=np.array([0.5]), city=[None], calls=[3],
                flag=[None]),
    ]  # fmt: skip
    before = storage.parquet_bytes(_log_frame_before_the_encoder_process(served, "i-1"))
    encoder = Encoder()
    try:
        after = encoder.run(encode_batch, join_by_version(served), "i-1")
    finally:
        encoder.stop()
    before_table, after_table = (pq.read_table(io.BytesIO(body)) for body in (before, after))
    assert after_table.schema.equals(before_table.schema, check_metadata=True)
    assert after_table.equals(before_table)
    assert after_table.column("proba_2").null_count == 3
    assert after == before


def test_encoder_errors_come_back_as_failures_and_a_dead_encoder_is_replaced() -> None:
    from concurrent.futures.process import BrokenProcessPool

    from trainyard.serving.prediction_log import Encoder, EncoderError

    encoder = Encoder()
    try:
        with pytest.raises(EncoderError, match="ValueError: invalid literal"):
            encoder.run(int, "not a number")
        worker = encoder.run(os.getpid)
        assert worker != os.getpid()
        with pytest.raises(BrokenProcessPool):
            encoder.run(os.kill, worker, signal.SIGKILL)
        assert encoder.run(int, "7") == 7  # a new process
    finally:
        encoder.stop()


def test_serving_settings_from_the_environment() -> None:
    settings = ServingSettings.from_env(
        {
            "TRAINYARD_SERVING_PORT": "9000",
            "TRAINYARD_SERVING_PIPELINES": "churn, breast_cancer",
            "TRAINYARD_SERVING_POLL_SECONDS": "2.5",
            "TRAINYARD_SERVING_API_KEY": "key-value-42",
        }
    )
    assert settings.port == 9000 and settings.poll_seconds == 2.5
    assert settings.pipelines == ("churn", "breast_cancer")
    assert "key-value-42" not in repr(settings)
    assert ServingSettings.from_env({}).api_key is None
    with pytest.raises(
        ValueError, match="TRAINYARD_SERVING_LOG_FLUSH_ROWS='x' is not a whole number"
    ):
        ServingSettings.from_env({"TRAINYARD_SERVING_LOG_FLUSH_ROWS": "x"})
    with pytest.raises(ValueError, match="must be positive"):
        ServingSettings.from_env({"TRAINYARD_SERVING_POLL_SECONDS": "0"})
    with pytest.raises(ValueError, match="TRAINYARD_SERVING_API_KEY is still the .env.example"):
        ServingSettings.from_env({"TRAINYARD_SERVING_API_KEY": "change-me"})
    with pytest.raises(ValueError, match="without TRAINYARD_SERVING_WEBHOOK_SECRET"):
        ServingSettings.from_env({"TRAINYARD_SERVING_WEBHOOK_URL": "http://x/webhooks/mlflow"})


def _served(model: object, columns: tuple[Column, ...]) -> ServedModel:
    classes = getattr(model, "classes_", None)
    return ServedModel(
        pipeline="churn",
        registered_name="churn",
        version="1",
        fingerprint=None,
        loaded_at=datetime.now(UTC),
        model=model,
        columns=columns,
        classes=tuple(classes.tolist()) if classes is not None else None,
        id_column="customer_id",
        preprocessor=transform_steps(model),
    )


def _churn_model(pandas_output: bool = False, **changes: object) -> tuple[object, object]:
    """A churn pipeline fitted on generated rows (``changes``: ``build_pipeline`` steps to set;
    ``pandas_output``: its transform gives a frame) and its spec."""
    from pathlib import Path

    from tests.support import churn_rows
    from trainyard.core.spec import load_spec
    from trainyard.training import modeling

    spec = load_spec(Path(__file__).parents[2] / "include" / "pipelines" / "churn.yaml")
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"params": {}})})
    model = modeling.build_pipeline(spec)
    model.set_params(**changes)
    if pandas_output:
        model[:-1].set_output(transform="pandas")
    rows = churn_rows(400)
    model.fit(rows[list(spec.schema_.features)], rows[spec.schema_.target])
    return model, spec


def _churn_request(spec: object, day: date = date(2026, 4, 2)) -> tuple[object, list[dict]]:
    """30 generated rows as records, with nulls in every column and never-seen categories, and
    the same rows as the frame scikit-learn would get (NaN and None where the records say null)."""
    from tests.support import churn_rows, feature_records

    rows = churn_rows(30, day)
    records = feature_records(rows)
    records[0] = {name: None for name in records[0]}  # every column imputed
    records[1]["contract"] = "prepaid"  # never seen in training: all zeros
    records[2]["region"] = None
    features = rows[list(spec.schema_.features)].astype(
        {name: object for name in spec.schema_.categorical_features}
    )
    for name in spec.schema_.features:
        features.loc[0, name] = np.nan if name in spec.schema_.numeric_features else None
    features.loc[1, "contract"] = "prepaid"
    features.loc[2, "region"] = None
    return features, records


def test_a_pipeline_is_transformed_once_and_answers_as_itself() -> None:
    from mlflow.models import infer_signature

    from trainyard.serving.models import with_shortcuts
    from trainyard.serving.schema import columns_from_signature

    model, spec = _churn_model()
    features, records = _churn_request(spec)
    columns = columns_from_signature(infer_signature(features).inputs)
    served = _served(model, columns)
    parsed = parse_request(_body({"records": records}), columns)

    frame = features_frame(served, parsed.columns)
    predictions, probabilities = served.predict(parsed.columns)

    assert served.preprocessor is not None and served.compiled is None
    assert frame.dtypes.equals(features.dtypes)
    assert predictions.tolist() == model.predict(features).tolist()
    assert np.array_equal(probabilities, model.predict_proba(features))

    # The compiled transform and the one-pass prediction give the same answers, bit for bit,
    # on nulls, unseen categories and other rows than the probes they were checked on.
    fast = with_shortcuts(served, [])
    assert fast.compiled is not None and fast.one_pass
    assert np.array_equal(fast.features(parsed.columns), served.features(parsed.columns))
    fast_predictions, fast_probabilities = fast.predict(parsed.columns)
    assert fast_predictions.tolist() == predictions.tolist()
    assert np.array_equal(fast_probabilities, probabilities)
    assert fast.describe()["compiled"] is True


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"features__numeric__scale": "passthrough"}, None),
        (
            {
                "features__numeric__scale": __import__(
                    "sklearn.preprocessing"
                ).preprocessing.MinMaxScaler()
            },
            "numeric: a MinMaxScaler step on number columns",
        ),
        (
            {
                "features__categorical__encode__handle_unknown": "infrequent_if_exist",
                "features__categorical__encode__min_frequency": 5,
            },
            "categorical: the OneHotEncoder drops, errs on unseen values",
        ),
        (
            {"features__numeric__impute__add_indicator": True},
            "numeric: the imputer adds indicators",
        ),
        ({"features__remainder": "passthrough"}, None),
    ],
)
def test_preprocessing_it_cannot_reproduce_is_left_to_scikit_learn(
    changes: dict, reason: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.models import infer_signature

    from trainyard.serving.compiled import NotCompiled, compile_transform
    from trainyard.serving.models import with_shortcuts
    from trainyard.serving.schema import columns_from_signature

    model, spec = _churn_model(**changes)
    features, records = _churn_request(spec)
    columns = columns_from_signature(infer_signature(features).inputs)
    served = _served(model, columns)
    if reason is None:  # a passthrough step is no step; a passthrough remainder has no columns
        assert compile_transform(served.preprocessor, columns) is not None
    else:
        with pytest.raises(NotCompiled, match=reason):
            compile_transform(served.preprocessor, columns)
        with caplog.at_level("INFO", logger="trainyard.serving.models"):
            served = with_shortcuts(served, [])
        assert served.compiled is None and reason in caplog.text
    predictions, probabilities = served.predict(
        parse_request(_body({"records": records}), columns).columns
    )
    assert predictions.tolist() == model.predict(features).tolist()
    assert np.array_equal(probabilities, model.predict_proba(features))


def test_a_compiled_transform_that_differs_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    """Pandas output: the ColumnTransformer's shape is recognised, but its output is a frame,
    not the compiled array, so the comparison on the probes refuses it."""
    from mlflow.models import infer_signature

    from trainyard.serving.models import with_shortcuts
    from trainyard.serving.schema import columns_from_signature

    model, spec = _churn_model(pandas_output=True)
    features, _ = _churn_request(spec)
    served = _served(model, columns_from_signature(infer_signature(features).inputs))
    with caplog.at_level("WARNING", logger="trainyard.serving.models"):
        served = with_shortcuts(served, [])
    assert served.compiled is None
    assert "the compiled transform differs" in caplog.text


def test_a_bare_estimator_predicts_without_a_transform() -> None:
    from sklearn.linear_model import LinearRegression

    columns = (Column("x", "number"), Column("n", "integer"), Column("flag", "boolean"))
    records = [{"x": 1.0, "n": 2, "flag": True}, {"x": 3, "n": 5, "flag": False}]
    import pandas as pd

    training = pd.DataFrame({"x": [0.0, 1.0, 2.0], "n": [1, 0, 3], "flag": [False, True, True]})
    model = LinearRegression().fit(training, [0, 1, 5])
    served = _served(model, columns)
    parsed = parse_request(_body({"records": records}), columns)

    frame = features_frame(served, parsed.columns)
    predictions, probabilities = served.predict(parsed.columns)

    assert served.preprocessor is None
    assert probabilities is None
    assert [str(dtype) for dtype in frame.dtypes] == ["float64", "int64", "bool"]
    assert predictions.tolist() == model.predict(pd.DataFrame.from_records(records)).tolist()


def test_predictions_run_off_the_event_loop() -> None:
    """While a prediction runs, the same app answers /health: the event loop is not blocked."""
    import asyncio
    import threading
    from pathlib import Path

    import httpx

    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_spec
    from trainyard.serving.app import create_app

    started, release = threading.Event(), threading.Event()

    class BlockingModel:
        classes_ = np.array([0, 1])
        released: bool | None = None

        def predict_proba(self, frame: object) -> np.ndarray:
            started.set()
            # Predicting on the event loop would block /health below: this wait would time out.
            self.released = release.wait(10)
            return np.array([[0.25, 0.75]])

        def predict(self, frame: object) -> np.ndarray:
            return np.array([1])

    spec = load_spec(Path(__file__).parents[2] / "include" / "pipelines" / "churn.yaml")
    model = BlockingModel()
    app = create_app(Settings.from_env({}), ServingSettings(), [spec])
    # No lifespan here (nothing loads from MLflow): the model is put in place directly.
    app.state.follower._served = {spec.name: _served(model, (Column("x", "number"),))}

    async def health_while_predicting() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            body = {"records": [{"x": 1.0}]}
            predicting = asyncio.create_task(client.post(f"/predict/{spec.name}", json=body))
            assert await asyncio.to_thread(started.wait, 10)
            health = await client.get("/health")
            release.set()
            return health, await predicting

    health, answer = asyncio.run(health_while_predicting())

    assert health.status_code == 200
    assert model.released is True
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [1]
    assert answer.json()["probabilities"] == [{"0": 0.25, "1": 0.75}]


def test_waiting_requests_are_predicted_together_and_each_gets_its_own_rows() -> None:
    """With every thread busy, later requests queue and are predicted in one call, at most
    ``max_rows`` rows at a time; each request still gets exactly its own rows' answers."""
    import asyncio
    from typing import ClassVar

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from trainyard.serving.batching import MicroBatcher

    class Counted(ServedModel):
        calls: ClassVar[list[int]] = []

        def predict(self, data: dict) -> tuple:
            self.calls.append(len(data["x"]))
            return super().predict(data)

    training = pd.DataFrame({"x": np.linspace(-3, 3, 40)})
    model = LogisticRegression().fit(training, (training["x"] > 0).astype(int))
    served = Counted(**{**_served(model, (Column("x", "number"),)).__dict__})
    requests = [[{"x": float(i) - 10}] if i % 3 else [{"x": 0.5}, {"x": -2.0}] for i in range(21)]
    parsed = [parse_request(_body({"records": rows}), served.columns) for rows in requests]

    async def send_all(batcher: MicroBatcher) -> list:
        try:
            return await asyncio.gather(*(batcher.predict(served, each) for each in parsed))
        finally:
            batcher.shutdown()

    answers = asyncio.run(send_all(MicroBatcher(workers=1, max_rows=8)))

    # The first request found the thread free; the rest waited and went in joined calls.
    assert Counted.calls[0] == len(requests[0]) and len(Counted.calls) < len(requests)
    assert max(Counted.calls) <= 8 and sum(Counted.calls) == sum(map(len, requests))
    for rows, (predictions, probabilities) in zip(requests, answers, strict=True):
        alone = pd.DataFrame.from_records(rows)
        assert predictions.tolist() == model.predict(alone).tolist()
        assert np.allclose(probabilities, model.predict_proba(alone))


def test_a_failing_request_in_a_joined_prediction_fails_alone() -> None:
    import asyncio

    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from trainyard.serving.batching import MicroBatcher

    training = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    served = _served(LinearRegression().fit(training, [0, 1, 2]), (Column("x", "number"),))
    # Built here, not parsed: the request check would refuse the text that fails the model.
    requests = [
        ParsedRequest({"x": values}, [None])
        for values in (np.array([1.0]), np.array([2.0]), ["not a number"], np.array([0.0]))
    ]

    async def send_all() -> list:
        batcher = MicroBatcher(workers=1, max_rows=256)
        try:
            return await asyncio.gather(
                *(batcher.predict(served, each) for each in requests), return_exceptions=True
            )
        finally:
            batcher.shutdown()

    answers = asyncio.run(send_all())

    assert isinstance(answers[2], ValueError)
    assert [round(float(answers[i][0][0]), 6) for i in (0, 1, 3)] == [1.0, 2.0, 0.0]


def test_a_large_request_is_predicted_in_parts_at_once_with_the_answers_of_the_whole() -> None:
    import asyncio
    from typing import ClassVar

    from mlflow.models import infer_signature

    from tests.support import churn_rows, feature_records
    from trainyard.serving.batching import PART_MIN_ROWS, MicroBatcher
    from trainyard.serving.models import with_shortcuts
    from trainyard.serving.schema import columns_from_signature

    class Counted(ServedModel):
        calls: ClassVar[list[int]] = []

        def predict(self, data: dict) -> tuple:
            self.calls.append(len(data["contract"]))
            return super().predict(data)

    model, spec = _churn_model()
    features = churn_rows(1000, date(2026, 4, 3))[list(spec.schema_.features)]
    columns = columns_from_signature(infer_signature(features).inputs)
    fast = with_shortcuts(_served(model, columns), [])
    served = Counted(**fast.__dict__)
    request = parse_request(_body({"records": feature_records(churn_rows(1000))}), columns)
    small = parse_request(_body({"records": feature_records(churn_rows(PART_MIN_ROWS))}), columns)

    async def send(batcher: MicroBatcher, each: ParsedRequest) -> tuple:
        try:
            return await batcher.predict(served, each)
        finally:
            batcher.shutdown()

    predictions, probabilities = asyncio.run(send(MicroBatcher(workers=2, max_rows=256), request))
    asyncio.run(send(MicroBatcher(workers=2, max_rows=256), small))

    assert served.parallel_rows
    assert Counted.calls == [500, 500, PART_MIN_ROWS]  # too small to cut: one part
    whole_predictions, whole_probabilities = fast.predict(request.columns)
    assert predictions.tolist() == whole_predictions.tolist()
    assert np.array_equal(probabilities, whole_probabilities)


def test_a_replaced_model_is_freed_although_frozen_out_of_the_collector() -> None:
    import gc
    import weakref

    from trainyard.serving.models import _freeze_long_lived

    model, _ = _churn_model()
    alive = [weakref.ref(model), weakref.ref(model[-1]), weakref.ref(model[0])]
    _freeze_long_lived()
    try:
        assert gc.get_freeze_count() > 0
        del model
        assert [ref() for ref in alive] == [None, None, None]  # by reference counting alone
    finally:
        gc.unfreeze()


def test_prediction_threads_and_batch_size_are_settings() -> None:
    settings = ServingSettings.from_env(
        {
            "TRAINYARD_SERVING_PREDICT_THREADS": "4",
            "TRAINYARD_SERVING_BATCH_MAX_ROWS": "64",
            "TRAINYARD_SERVING_LOG_SPILL_DIR": "/var/lib/trainyard/spill",
        }
    )
    assert (settings.predict_threads, settings.batch_max_rows) == (4, 64)
    assert str(settings.log_spill_dir) == "/var/lib/trainyard/spill"
    assert ServingSettings.from_env({}).predict_threads == 2
    with pytest.raises(ValueError, match="TRAINYARD_SERVING_PREDICT_THREADS must be positive"):
        ServingSettings.from_env({"TRAINYARD_SERVING_PREDICT_THREADS": "0"})


def test_spilled_rows_come_back_within_the_backlog_bound(tmp_path) -> None:
    """Rows S3 refused at shutdown are on disk; a restart with a smaller bound takes back the
    newest, drops (and deletes) the oldest, and counts both."""
    from trainyard.core.settings import Settings
    from trainyard.serving.metrics import ServingMetrics
    from trainyard.serving.prediction_log import PredictionLog, Served
    from trainyard_dev.services import free_ports

    # Nothing listens on this port: every write to S3 is refused at once.
    s3_down = Settings(
        s3_endpoint_url=f"http://127.0.0.1:{free_ports(1)[0]}",
        s3_access_key_id="k",
        s3_secret_access_key="s",
        service_timeout_seconds=1,
        service_retries=0,
    )

    def log(metrics: ServingMetrics, instance: str, bound: int) -> PredictionLog:
        return PredictionLog(s3_down, metrics, instance, 3600, 10**6, bound, tmp_path)

    first = log(ServingMetrics(), "20261101T000000Z-aaaa", 100)
    for index, rows in enumerate((3, 4)):
        first.record(
            Served(
                "churn", "churn", "1", datetime(2026, 11, 1, tzinfo=UTC),
                [f"r{index}-{i}" for i in range(rows)], {"x": np.ones(rows)},
                np.ones(rows), None, None,
            )
        )  # fmt: skip
        first.flush()  # refused: each request's rows stay a batch of their own
    assert first.close() == 0
    assert len(list(tmp_path.rglob("*.parquet"))) == 2

    metrics = ServingMetrics()
    second = log(metrics, "20261102T000000Z-bbbb", 5)
    assert second._recover() == 7
    second.flush()  # refused again; the cut applies the bound
    assert second.backlog_rows() == 4
    assert metrics.log_recovered_rows._value.get() == 7
    assert metrics.log_dropped_rows._value.get() == 3
    assert len(list(tmp_path.rglob("*.parquet"))) == 1

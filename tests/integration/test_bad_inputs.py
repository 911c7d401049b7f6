"""The bad-input corpus: every kind of bad input is refused with one line, and nothing is lost.

Each case writes a pipeline spec (a variant of the ``corpus`` pipeline), its suites and, when it
is about data, raw partitions under a prefix of its own; then runs the ``trainyard`` CLI in
process against the session's SeaweedFS and MLflow server and asserts:

- the exit code and the exact one-line message (its stable part: paths and dates are filled in);
- no traceback reaches the user;
- the raw objects (the corpus's and the case's) are byte-identical afterwards;
- the ``corpus`` model's ``champion`` alias still points at the same version, and no version
  was added (no case reaches the registry);
- where the input can be refused before training, no MLflow training run was started.

The module first trains the ``corpus`` champion (v1) on five clean days; the cases that need a
champion to compare with (the gate's) use it. Table-driven: add a case to ``CASES``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from trainyard import cli
from trainyard.core import storage
from trainyard_dev.churn import generate_day

NAME = "corpus"
DAYS = [date(2026, 6, d) for d in range(1, 6)]
BAD_DAY = date(2026, 6, 3)
WINDOW = ["--window-end", "2026-06-05", "--window-days", "5"]
TODAY = datetime.now(UTC).date()
TOMORROW = TODAY + timedelta(days=1)

BASE_SPEC: dict[str, Any] = {
    "name": NAME,
    "description": "the bad-input corpus's pipeline",
    "tags": ["test"],
    "schedule": None,
    "source": {"kind": "files", "prefix": NAME, "partitioning": "date=YYYY-MM-DD"},
    "window": {"days": 5, "end_offset_days": 1},
    "schema": {
        "numeric_features": ["tenure_months", "monthly_charges", "support_calls"],
        "categorical_features": ["contract", "region"],
        "target": "churned",
        "id_column": "customer_id",
        "timestamp_column": "event_date",
    },
    "model": {
        "task": "classification",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 500},
        "registered_name": NAME,
    },
    "metrics": ["roc_auc", "accuracy", "log_loss"],
    "gate": {"floors": {"roc_auc": 0.6}, "champion_metric": "roc_auc", "max_regression": 0.05},
    "validation": {"suite": NAME},
    "drift": {"schedule": None, "min_rows": 100},
}
#: Checks only the row count, so that what ingest refuses is proven to be refused by ingest.
PERMISSIVE_SUITE = {
    "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
}


def _base_suite() -> dict[str, Any]:
    return json.loads((REPO / "include" / "expectations" / "churn.json").read_text())


# ---- raw data -----------------------------------------------------------------------------------


def _key(prefix: str, day: date, name: str = "part-0000.parquet") -> str:
    return f"{prefix}/date={day:%Y-%m-%d}/{name}"


def _put(settings: Any, prefix: str, day: date, body: bytes, name: str = "part-0000.parquet"):
    storage.put_bytes(settings, f"s3://{settings.raw_bucket}/{_key(prefix, day, name)}", body)


def _day(day: date) -> pd.DataFrame:
    return generate_day(day, 300)


def _land(settings: Any, prefix: str, bad: Callable[[pd.DataFrame], pd.DataFrame] | None = None):
    """Five days; ``bad`` rewrites the frame of BAD_DAY (and may return None to leave it out)."""
    for day in DAYS:
        frame = _day(day)
        if bad is not None and day == BAD_DAY:
            frame = bad(frame)
            if frame is None:
                continue
        _put(settings, prefix, day, storage.parquet_bytes(frame))


def _every_day(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Any, str], None]:
    def land(settings: Any, prefix: str) -> None:
        for day in DAYS:
            _put(settings, prefix, day, storage.parquet_bytes(change(_day(day))))

    return land


def _bad_day(change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Callable[[Any, str], None]:
    return lambda settings, prefix: _land(settings, prefix, change)


def _bad_bytes(body: Callable[[bytes], bytes]) -> Callable[[Any, str], None]:
    def land(settings: Any, prefix: str) -> None:
        _land(settings, prefix)
        good = storage.parquet_bytes(_day(BAD_DAY))
        _put(settings, prefix, BAD_DAY, body(good))

    return land


def _duplicated_file(settings: Any, prefix: str) -> None:
    _land(settings, prefix)
    _put(settings, prefix, BAD_DAY, storage.parquet_bytes(_day(BAD_DAY)), "part-0000-copy.parquet")


def _recent_days(settings: Any, prefix: str) -> None:
    """Partitions from two days ago up to tomorrow: one dated in the future."""
    for offset in (-2, -1, 0, 1):
        day = TODAY + timedelta(days=offset)
        _put(settings, prefix, day, storage.parquet_bytes(_day(day)))


def _leak(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(retention_flag=frame.churned.astype(float))


def _three_classes(frame: pd.DataFrame) -> pd.DataFrame:
    """Classes 0, 1, 2, learnable but not perfectly (not a suspected leak)."""
    return frame.assign(churned=frame.churned + (frame.region == "north").astype(int))


def _text_target(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(churned=np.where(frame.churned == 1, "yes", "no"))


def _raw_state(settings: Any, prefixes: list[str]) -> dict[str, str]:
    state = {}
    for prefix in prefixes:
        for key in storage.list_keys(settings, settings.raw_bucket, f"{prefix}/"):
            body = storage.get_bytes(settings, f"s3://{settings.raw_bucket}/{key}")
            state[key] = hashlib.sha256(body).hexdigest()
    return state


# ---- spec, suite and file changes ---------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A change of one spec field, by dotted path."""

    def change(data: dict) -> None:
        *parents, leaf = path.split(".")
        for part in parents:
            data = data.setdefault(part, {})
        data[leaf] = value

    return change


def _all(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        for each in changes:
            each(data)

    return change


def _permissive(data: dict) -> None:
    data["validation"]["suite"] = "permissive"


def _expectation(index: int, **fields: Any) -> Callable[[dict], None]:
    def change(suite: dict) -> None:
        suite["expectations"][index].update(fields)

    return change


def _second_spec(registered_name: str) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        other = copy.deepcopy(BASE_SPEC)
        other["name"] = "other"
        other["model"]["registered_name"] = registered_name
        (root / "pipelines" / "other.yaml").write_text(yaml.safe_dump(other))

    return write


def _spec_text(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "pipelines" / f"{NAME}.yaml").write_text(text)


def _remove(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


def _write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_text(text)


# ---- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One kind of bad input and how it must be refused.

    ``argv`` and ``expected`` may name ``{pipelines}``, ``{expectations}``, ``{raw}`` (the
    case's raw prefix as an s3:// URI), ``{today}``, ``{tomorrow}`` and ``{root}``.
    """

    id: str
    argv: tuple[str, ...]
    expected: str
    exit_code: int = 2
    spec: Callable[[dict], None] | None = None
    suite: Callable[[dict], None] | None = None
    data: Callable[[Any, str], None] | None = None
    files: Callable[[Path], None] | None = None
    #: Refused by the gate after training (the message is on stdout, in the outcome).
    by_gate: bool = False
    #: The next line of a message that lists problems under a heading (pydantic's fields).
    also: str = ""


RUN = ("run", NAME, *WINDOW)
INGEST = ("ingest", NAME, *WINDOW)
SPECS = ("specs",)
SPEC_FILE = "invalid pipeline spec {pipelines}/corpus.yaml: "
SUITE_FILE = "invalid expectation suite {expectations}/corpus.json: "
GATE_REJECTED = "REJECTED BY GATE"

CASES = [
    # -- specs: `trainyard specs` (and every command, which loads all specs) -----------------------
    Case(
        "spec-misspelt-hyperparameter",
        SPECS,
        SPEC_FILE + "field 'model.params.max_iterr': sklearn.linear_model.LogisticRegression does "
        "not accept it: LogisticRegression.__init__() got an unexpected keyword argument "
        "'max_iterr'",
        spec=_set("model.params", {"max_iterr": 100}),
    ),
    Case(
        "spec-misspelt-hyperparameter-at-run",
        RUN,
        SPEC_FILE + "field 'model.params.max_iterr': sklearn.linear_model.LogisticRegression does "
        "not accept it",
        spec=_set("model.params", {"max_iterr": 100}),
    ),
    Case(
        "spec-invalid-hyperparameter-value",
        SPECS,
        SPEC_FILE + "field 'model.params.C': The 'C' parameter of LogisticRegression must be a "
        "float in the range (0.0, inf]. Got -1 instead.",
        spec=_set("model.params", {"C": -1}),
    ),
    Case(
        "spec-regressor-under-classification",
        SPECS,
        SPEC_FILE + "field 'model.task': sklearn.linear_model.Ridge is a regressor, but "
        "model.task is classification",
        spec=_set("model.estimator", "sklearn.linear_model.Ridge"),
    ),
    Case(
        "spec-classifier-under-regression",
        SPECS,
        SPEC_FILE + "field 'model.task': sklearn.linear_model.LogisticRegression is a "
        "classifier, but model.task is regression",
        spec=_all(
            _set("model.task", "regression"),
            _set("metrics", ["r2"]),
            _set("gate", {"champion_metric": "r2"}),
        ),
    ),
    Case(
        "spec-estimator-not-importable",
        SPECS,
        SPEC_FILE + "field 'model.estimator': model.estimator 'sklearn.linear_model.Logistic' "
        "cannot be imported",
        spec=_set("model.estimator", "sklearn.linear_model.Logistic"),
    ),
    Case(
        "spec-untrusted-sklearn-internal",
        SPECS,
        SPEC_FILE + "field 'model.skops_trusted_types': the fitted "
        "sklearn.neighbors.KNeighborsClassifier contains types skops does not trust by default: "
        "['sklearn.metrics._dist_metrics.EuclideanDistance64', "
        "'sklearn.neighbors._kd_tree.KDTree']",
        spec=_all(
            _set("model.estimator", "sklearn.neighbors.KNeighborsClassifier"),
            _set("model.params", {}),
        ),
    ),
    Case(
        "spec-untrusted-custom-type",
        SPECS,
        SPEC_FILE + "field 'model.skops_trusted_types': the fitted "
        "tests.integration.bad_input_estimators.TallyClassifier contains types skops does not "
        "trust by default: ['tests.integration.bad_input_estimators.Tally', "
        "'tests.integration.bad_input_estimators.TallyClassifier']",
        spec=_all(
            _set("model.estimator", "tests.integration.bad_input_estimators.TallyClassifier"),
            _set("model.params", {}),
        ),
    ),
    Case(
        "spec-unknown-field",
        SPECS,
        "invalid pipeline spec {pipelines}/corpus.yaml:",
        spec=_set("schedul", "@daily"),
        also="  field 'schedul': Extra inputs are not permitted",
    ),
    Case(
        "spec-metric-of-another-task",
        SPECS,
        "invalid pipeline spec {pipelines}/corpus.yaml:",
        spec=_set("metrics", ["roc_auc", "r2"]),
        also="  field '<top level>': Value error, metrics ['r2'] are not classification metrics",
    ),
    Case(
        "spec-leak-ceiling-on-unlisted-metric",
        SPECS,
        "invalid pipeline spec {pipelines}/corpus.yaml:",
        spec=_set("gate.leak_ceilings", {"f1": 0.99}),
        also="  field '<top level>': Value error, gate uses metric 'f1', which is not listed in "
        "'metrics'",
    ),
    Case(
        "spec-window-days-zero",
        SPECS,
        "invalid pipeline spec {pipelines}/corpus.yaml:",
        spec=_set("window.days", 0),
        also="  field 'window.days': Input should be greater than or equal to 1",
    ),
    Case(
        "spec-name-not-the-file-name",
        SPECS,
        SPEC_FILE + "field 'name': 'churn2' must match the file name 'corpus'",
        spec=_set("name", "churn2"),
    ),
    Case(
        "spec-not-yaml",
        SPECS,
        "pipeline spec {pipelines}/corpus.yaml is not valid YAML:",
        files=_spec_text("name: [corpus\n"),
    ),
    Case(
        "spec-shared-registered-name",
        SPECS,
        "invalid pipeline specs {pipelines}/corpus.yaml and {pipelines}/other.yaml: field "
        "'model.registered_name': both register model 'corpus'; each pipeline needs its own "
        "(one would replace the other's champion)",
        files=_second_spec(NAME),
    ),
    Case(
        "spec-shared-registered-name-at-run",
        RUN,
        "invalid pipeline specs {pipelines}/corpus.yaml and {pipelines}/other.yaml: field "
        "'model.registered_name': both register model 'corpus'",
        files=_second_spec(NAME),
    ),
    Case(
        "spec-unknown-pipeline",
        ("run", "corpuss", *WINDOW),
        "no pipeline 'corpuss' in {pipelines}; known: ['corpus']",
    ),
    # -- suites: `trainyard specs`, and the validate step before any data is read ---------------
    Case(
        "suite-unknown-expectation-type",
        SPECS,
        SUITE_FILE + "expectation 2 (expect_column_values_to_not_be_nul): field 'type': unknown "
        "expectation type 'expect_column_values_to_not_be_nul'",
        suite=_expectation(2, type="expect_column_values_to_not_be_nul"),
    ),
    Case(
        "suite-unknown-expectation-type-at-run",
        RUN,
        SUITE_FILE + "expectation 2 (expect_column_values_to_not_be_nul): field 'type': unknown "
        "expectation type 'expect_column_values_to_not_be_nul'",
        suite=_expectation(2, type="expect_column_values_to_not_be_nul"),
    ),
    Case(
        "suite-severity-warn",
        SPECS,
        SUITE_FILE + "expectation 3 (expect_column_values_to_be_between): field 'severity': "
        "'warn' is not one of critical, warning, info",
        suite=_expectation(3, severity="warn"),
    ),
    Case(
        "suite-severity-warn-at-run",
        RUN,
        SUITE_FILE + "expectation 3 (expect_column_values_to_be_between): field 'severity': "
        "'warn' is not one of critical, warning, info",
        suite=_expectation(3, severity="warn"),
    ),
    Case(
        "suite-unknown-argument",
        SPECS,
        SUITE_FILE + "expectation 3 (expect_column_values_to_be_between): field "
        "'kwargs.max_valu': extra fields not permitted",
        suite=_expectation(3, kwargs={"column": "tenure_months", "max_valu": 120}),
    ),
    Case(
        "suite-missing-argument",
        SPECS,
        SUITE_FILE + "expectation 2 (expect_column_values_to_not_be_null): field "
        "'kwargs.column': field required",
        suite=_expectation(2, kwargs={}),
    ),
    Case(
        "suite-file-missing",
        SPECS,
        "expectation suite 'corpus' not found at {expectations}/corpus.json",
        files=_remove("expectations/corpus.json"),
    ),
    Case(
        "suite-not-json",
        RUN,
        "expectation suite {expectations}/corpus.json is not valid JSON:",
        files=_write("expectations/corpus.json", "{expectations: []"),
    ),
    Case(
        "suite-without-expectations",
        SPECS,
        "expectation suite {expectations}/corpus.json must be an object with an 'expectations' "
        "list",
        files=_write("expectations/corpus.json", '{"expectation": []}'),
    ),
    # -- raw data: ingest checks every partition before merging ---------------------------------
    Case(
        "data-corrupt-file",
        RUN,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet cannot be read as "
        "Parquet: Parquet magic bytes not found in footer",
        spec=_permissive,
        data=_bad_bytes(lambda good: b"this is not parquet"),
    ),
    Case(
        "data-truncated-file",
        RUN,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet cannot be read as "
        "Parquet:",
        spec=_permissive,
        data=_bad_bytes(lambda good: good[: len(good) // 2]),
    ),
    Case(
        "data-renamed-column",
        RUN,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet: lacks declared "
        "column(s) ['monthly_charges']; it has ['customer_id', 'event_date', 'tenure_months', "
        "'monthly_charge',",
        spec=_permissive,
        data=_bad_day(lambda f: f.rename(columns={"monthly_charges": "monthly_charge"})),
    ),
    Case(
        "data-missing-target-column",
        INGEST,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet: lacks declared "
        "column(s) ['churned']",
        spec=_permissive,
        data=_bad_day(lambda f: f.drop(columns=["churned"])),
    ),
    Case(
        "data-text-in-numeric-column",
        RUN,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet: numeric feature "
        "column 'support_calls' must hold numbers; found 'three' (1 such value(s))",
        spec=_permissive,
        data=_bad_day(
            lambda f: f.assign(support_calls=["three", *f.support_calls.astype(str)[1:]])
        ),
    ),
    Case(
        "data-unparseable-timestamp",
        INGEST,
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet: timestamp column "
        "'event_date' must hold dates; found 'June 3rd-ish' (300 such value(s))",
        spec=_permissive,
        data=_bad_day(lambda f: f.assign(event_date="June 3rd-ish")),
    ),
    Case(
        "data-kind-changes-between-partitions",
        RUN,
        "column 'contract' holds number values in partition 2026-06-03 file "
        "{raw}/date=2026-06-03/part-0000.parquet but text values in partition 2026-06-01 file "
        "{raw}/date=2026-06-01/part-0000.parquet",
        spec=_permissive,
        data=_bad_day(lambda f: f.assign(contract=f.contract.astype("category").cat.codes)),
    ),
    Case(
        "data-empty-partition",
        RUN,
        "partition 2026-06-03 ({raw}/date=2026-06-03/) holds no rows",
        spec=_permissive,
        data=_bad_day(lambda f: f.head(0)),
    ),
    Case(
        "data-missing-partition",
        RUN,
        "1 raw partition(s) missing under {raw}/: 2026-06-03",
        spec=_permissive,
        data=_bad_day(lambda f: None),
    ),
    Case(
        "data-continuous-target-under-classification",
        RUN,
        "partition 2026-06-01 file {raw}/date=2026-06-01/part-0000.parquet: target 'churned' "
        "holds continuous values (e.g. ",
        spec=_permissive,
        data=_every_day(lambda f: f.assign(churned=f.monthly_charges / 100)),
    ),
    Case(
        "data-text-target-under-regression",
        RUN,
        "partition 2026-06-01 file {raw}/date=2026-06-01/part-0000.parquet: target column "
        "'churned' must hold numbers; found ",
        spec=_all(
            _permissive,
            _set("model.task", "regression"),
            _set("model.estimator", "sklearn.linear_model.Ridge"),
            _set("model.params", {}),
            _set("model.registered_name", NAME),
            _set("metrics", ["r2"]),
            _set("gate", {"champion_metric": "r2"}),
        ),
        data=_every_day(_text_target),
    ),
    Case(
        "data-single-class",
        RUN,
        "target 'churned' holds a single class [1] in ",
        spec=_permissive,
        data=_every_day(lambda f: f.assign(churned=1)),
    ),
    Case(
        "data-no-labels-yet",
        RUN,
        "no labelled rows to train on",
        spec=_permissive,
        data=_every_day(lambda f: f.assign(churned=pd.array([None] * len(f), dtype="Int64"))),
    ),
    Case(
        "data-failed-critical-expectation",
        RUN,
        "data validation failed: 1 of 26 expectations in suite 'corpus' failed on snapshot ",
        exit_code=1,
        data=_bad_day(lambda f: f.assign(tenure_months=-5)),
    ),
    # -- the gate: trained, then refused; the champion stays ------------------------------------
    Case(
        "gate-leaking-feature",
        RUN,
        "[FAIL] suspected leak: implausibly high: roc_auc=1.0000 vs bound 0.9990",
        exit_code=0,
        spec=_all(
            _permissive,
            lambda d: d["schema"]["numeric_features"].append("retention_flag"),
        ),
        data=_every_day(_leak),
        by_gate=True,
    ),
    Case(
        "gate-champion-other-classes",
        RUN,
        "[FAIL] champion v1 cannot score this holdout: it predicts classes [0, 1], the "
        "challenger [0, 1, 2] (to replace it anyway, run with replace_incompatible_champion)",
        exit_code=0,
        spec=_permissive,
        data=_every_day(_three_classes),
        by_gate=True,
    ),
    Case(
        "gate-champion-needs-a-dropped-column",
        RUN,
        "[FAIL] champion v1 cannot score this holdout: it needs columns this holdout lacks: "
        "['monthly_charges']",
        exit_code=0,
        spec=lambda d: d["schema"]["numeric_features"].remove("monthly_charges"),
        by_gate=True,
    ),
    Case(
        "gate-champion-other-task",
        RUN,
        "[FAIL] champion v1 cannot score this holdout: it is a classifier, this run's task is "
        "regression",
        exit_code=0,
        spec=_all(
            _permissive,
            _set("model.task", "regression"),
            _set("model.estimator", "sklearn.linear_model.Ridge"),
            _set("model.params", {}),
            _set("metrics", ["r2"]),
            _set("gate", {"champion_metric": "r2"}),
        ),
        by_gate=True,
    ),
    # -- command-line arguments ----------------------------------------------------------------
    Case(
        "cli-window-days-zero",
        ("run", NAME, "--window-end", "2026-06-05", "--window-days", "0"),
        "window_days must be at least 1, got 0",
    ),
    Case(
        "cli-window-days-negative",
        ("ingest", NAME, "--window-end", "2026-06-05", "--window-days", "-3"),
        "window_days must be at least 1, got -3",
    ),
    Case(
        "cli-window-end-not-a-date",
        ("ingest", NAME, "--window-end", "2026-13-45"),
        "--window-end '2026-13-45' is not a date (YYYY-MM-DD)",
    ),
    Case(
        "data-partition-dated-in-the-future",
        ("run", NAME, "--window-end", "{tomorrow}", "--window-days", "3"),
        "window_end {tomorrow} is after the run day {today}: partitions dated in the future are "
        "refused",
        spec=_permissive,
        data=_recent_days,
    ),
    Case(
        "cli-snapshot-file-missing",
        ("validate", NAME, "--snapshot", "{root}/nope.json"),
        "--snapshot {root}/nope.json: cannot read it: No such file or directory",
    ),
    Case(
        "cli-snapshot-file-not-json",
        ("validate", NAME, "--snapshot", "{root}/snapshot.json"),
        "--snapshot {root}/snapshot.json: not the JSON the snapshot step writes: field "
        "'<top level>': Invalid JSON",
        files=_write("snapshot.json", "snapshot: yes"),
    ),
    Case(
        "cli-snapshot-gone",
        ("validate", NAME, "--snapshot", "{root}/snapshot.json"),
        "snapshot s3://trainyard/snapshots/corpus/0000.parquet does not exist (any more)",
        files=_write(
            "snapshot.json",
            json.dumps(
                {
                    "uri": "s3://trainyard/snapshots/corpus/0000.parquet",
                    "sha256": "0" * 64,
                    "rows": 1,
                    "window_start": "2026-06-01",
                    "window_end": "2026-06-05",
                    "sources": 1,
                }
            ),
        ),
    ),
    Case(
        "cli-snapshot-file-of-another-step",
        ("evaluate", NAME, "--snapshot", "{root}/snapshot.json", "--training", "{root}/s.json"),
        "--snapshot {root}/snapshot.json: not the JSON the snapshot step writes: field 'uri': "
        "Field required",
        files=_write("snapshot.json", '{"mlflow_run_id": "x"}'),
    ),
    # -- drift checks --------------------------------------------------------------------------
    Case(
        "drift-window-days-zero",
        ("drift", NAME, "--window-end", "2026-06-05", "--window-days", "0"),
        "window_days must be at least 1, got 0",
    ),
    Case(
        "drift-window-end-in-the-future",
        ("drift", NAME, "--window-end", "{tomorrow}"),
        "window_end {tomorrow} is after the run day {today}: partitions dated in the future are "
        "refused",
    ),
    Case(
        "drift-window-end-not-a-date",
        ("drift", NAME, "--window-end", "yesterday"),
        "--window-end 'yesterday' is not a date (YYYY-MM-DD)",
    ),
    Case(
        "drift-corrupt-current-partition",
        ("drift", NAME, "--window-end", "2026-06-03", "--window-days", "1"),
        "partition 2026-06-03 file {raw}/date=2026-06-03/part-0000.parquet cannot be read as "
        "Parquet:",
        data=_bad_bytes(lambda good: good[:100]),
    ),
    Case(
        "drift-current-batch-fails-validation",
        ("drift", NAME, "--window-end", "2026-06-03", "--window-days", "1"),
        "data validation failed: 1 of 26 expectations in suite 'corpus' failed on snapshot ",
        exit_code=1,
        data=_bad_day(lambda f: f.assign(tenure_months=-5)),
    ),
    Case(
        "drift-invalid-suite",
        ("drift", NAME, "--window-end", "2026-06-05", "--window-days", "1"),
        SUITE_FILE + "expectation 3 (expect_column_values_to_be_between): field 'severity': "
        "'warn' is not one of critical, warning, info",
        suite=_expectation(3, severity="warn"),
    ),
    Case(
        "drift-champion-snapshot-lacks-a-compared-column",
        ("drift", NAME, "--window-end", "2026-06-05", "--window-days", "1"),
        "the snapshot champion corpus v1 was trained on has no column 'extra' that the drift "
        "check compares (the spec's features changed since it was written): s3://",
        spec=_all(
            _permissive,
            _set(
                "schema.numeric_features",
                ["tenure_months", "monthly_charges", "support_calls", "extra"],
            ),
        ),
        data=_every_day(lambda f: f.assign(extra=1.0)),
    ),
    Case(
        "drift-static-dataset",
        ("drift", NAME),
        "pipeline 'corpus' reads a static dataset; nothing new can drift",
        spec=_all(
            _set("source", {"kind": "sklearn_dataset", "dataset": "breast_cancer"}),
            _set(
                "schema",
                {"numeric_features": ["mean_radius", "mean_texture"], "target": "target"},
            ),
        ),
    ),
]


# ---- fixtures and the runner --------------------------------------------------------------------


def _write_project(root: Path, spec: dict, suite: dict) -> None:
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / "expectations").mkdir(parents=True, exist_ok=True)
    (root / "pipelines" / f"{NAME}.yaml").write_text(yaml.safe_dump(spec))
    (root / "expectations" / f"{NAME}.json").write_text(json.dumps(suite, indent=1))
    (root / "expectations" / "permissive.json").write_text(json.dumps(PERMISSIVE_SUITE))


def _use_project(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("TRAINYARD_PIPELINES_DIR", str(root / "pipelines"))
    monkeypatch.setenv("TRAINYARD_EXPECTATIONS_DIR", str(root / "expectations"))


def _champion() -> tuple[str | None, list[str]]:
    from mlflow import MlflowClient

    client = MlflowClient()
    versions = sorted(v.version for v in client.search_model_versions(f"name = '{NAME}'"))
    try:
        champion = client.get_model_version_by_alias(NAME, "champion").version
    except Exception:  # noqa: BLE001 (no model or alias yet)
        champion = None
    return champion, versions


def _training_runs() -> int:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"{NAME}-training")
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], max_results=1000))


@pytest.fixture(scope="module")
def champion(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corpus's champion: trained once on five clean days."""
    root = tmp_path_factory.mktemp("corpus-base")
    _write_project(root, BASE_SPEC, _base_suite())
    _land(settings, NAME)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _use_project(monkeypatch, root)
        assert cli.main(["run", NAME, *WINDOW, "--reason", "corpus champion"]) == 0
    version, versions = _champion()
    assert version == "1" and versions == ["1"]
    return version


def test_the_corpus_has_at_least_forty_kinds() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_is_lost(
    case: Case,
    champion: str,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"bad/{case.id}"
    spec = copy.deepcopy(BASE_SPEC)
    if case.data is not None:
        spec["source"]["prefix"] = prefix
        case.data(settings, prefix)
    if case.spec is not None:
        case.spec(spec)
    suite = _base_suite()
    if case.suite is not None:
        case.suite(suite)
    _write_project(tmp_path, spec, suite)
    if case.files is not None:
        case.files(tmp_path)
    _use_project(monkeypatch, tmp_path)
    places = {
        "pipelines": tmp_path / "pipelines",
        "expectations": tmp_path / "expectations",
        "raw": f"s3://{settings.raw_bucket}/{prefix}",
        "root": tmp_path,
        "today": TODAY,
        "tomorrow": TOMORROW,
    }
    argv = [part.format(**places) for part in case.argv]
    expected = case.expected.format(**places)
    raw_before = _raw_state(settings, [NAME, prefix])
    runs_before = _training_runs()
    capsys.readouterr()

    code = cli.main(argv)

    out, err = capsys.readouterr()
    assert code == case.exit_code, err
    assert "Traceback" not in err
    if case.by_gate:
        assert GATE_REJECTED in out
        assert any(line.strip().startswith(expected) for line in out.splitlines()), out
    else:
        assert any(line.startswith(f"trainyard: {expected}") for line in err.splitlines()), err
        assert case.also in err
        assert _training_runs() == runs_before, "refused input must not start a training run"
    assert _raw_state(settings, [NAME, prefix]) == raw_before
    assert _champion() == (champion, [champion])


def test_a_duplicated_file_is_read_once(
    champion: str,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same bytes uploaded twice into one partition count once, with a warning."""
    prefix = "bad/duplicated-file"
    _duplicated_file(settings, prefix)
    spec = copy.deepcopy(BASE_SPEC)
    spec["source"]["prefix"] = prefix
    _write_project(tmp_path, spec, _base_suite())
    _use_project(monkeypatch, tmp_path)
    raw_before = _raw_state(settings, [prefix])

    assert cli.main(["ingest", NAME, *WINDOW]) == 0

    snapshot = json.loads(capsys.readouterr().out)
    assert (snapshot["rows"], snapshot["sources"]) == (5 * 300, 5)
    raw = f"s3://{settings.raw_bucket}/{prefix}/date=2026-06-03"
    assert (
        f"{raw}/part-0000.parquet has the same bytes as {raw}/part-0000-copy.parquet; "
        "reading them once"
    ) in caplog.text
    assert _raw_state(settings, [prefix]) == raw_before
    assert _champion() == (champion, [champion])


def test_the_cli_process_prints_one_line_and_no_traceback(champion: str, tmp_path: Path) -> None:
    """The real process: exit code 2, one line on stderr, nothing on stdout; --debug adds it."""
    spec = copy.deepcopy(BASE_SPEC)
    spec["model"]["params"] = {"max_deth": 3}
    _write_project(tmp_path, spec, _base_suite())
    env = {
        **os.environ,
        "TRAINYARD_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "TRAINYARD_EXPECTATIONS_DIR": str(tmp_path / "expectations"),
    }
    command = [sys.executable, "-m", "trainyard", "run", NAME, *WINDOW]

    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    with_debug = [*command[:3], "--debug", *command[3:]]
    debug = subprocess.run(with_debug, capture_output=True, text=True, env=env, timeout=300)

    assert plain.returncode == debug.returncode == 2
    assert plain.stdout == ""
    assert plain.stderr.strip().splitlines()[-1] == (
        f"trainyard: invalid pipeline spec {tmp_path}/pipelines/corpus.yaml: field "
        "'model.params.max_deth': sklearn.linear_model.LogisticRegression does not accept it: "
        "LogisticRegression.__init__() got an unexpected keyword argument 'max_deth'"
    )
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    assert _champion() == (champion, [champion])


def test_an_incompatible_champion_is_replaced_only_when_the_run_asks(
    champion: str,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The escape hatch: `--replace-incompatible-champion` (the DAG's Param), in the lineage."""
    from mlflow import MlflowClient

    name = "corpus_replaced"
    binary = copy.deepcopy(BASE_SPEC)
    binary["model"]["registered_name"] = name
    _write_project(tmp_path, binary, _base_suite())
    _use_project(monkeypatch, tmp_path)
    assert cli.main(["run", NAME, *WINDOW]) == 0
    prefix = "bad/replace-three-classes"
    _every_day(_three_classes)(settings, prefix)
    three = copy.deepcopy(binary)
    three["source"]["prefix"] = prefix
    three["validation"]["suite"] = "permissive"
    _write_project(tmp_path, three, _base_suite())
    client = MlflowClient()

    capsys.readouterr()
    assert cli.main(["run", NAME, *WINDOW]) == 0
    assert GATE_REJECTED in capsys.readouterr().out
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    assert cli.main(["run", NAME, *WINDOW, "--replace-incompatible-champion"]) == 0
    out = capsys.readouterr().out
    assert "pipeline corpus: REGISTERED" in out, out
    assert "[ok  ] champion v1 cannot score this holdout (it predicts classes [0, 1], the " in out
    new = client.get_model_version_by_alias(name, "champion")
    assert new.version == "2"
    assert new.tags["replaced_incompatible_champion"] == (
        "v1: it predicts classes [0, 1], the challenger [0, 1, 2]"
    )
    assert (
        client.get_run(new.run_id).data.tags["replaced_incompatible_champion"]
        == (new.tags["replaced_incompatible_champion"])
    )
    assert client.get_model_version_by_alias(name, "previous").version == "1"
    assert _champion() == (champion, [champion])

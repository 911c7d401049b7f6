"""Expectation suites are checked like specs: nothing is dropped silently (imports GX)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from trainyard.core.settings import Settings
from trainyard.data.validation import (
    SuiteError,
    check_suite,
    load_checked_suite,
    load_suite_json,
    run_suite,
)

PATH = Path("expectations/s.json")
GOOD = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}


@pytest.mark.parametrize("suite", ["churn", "breast_cancer"])
def test_shipped_suites_are_valid(suite: str) -> None:
    settings = replace(Settings.from_env(), expectations_dir=REPO / "include" / "expectations")
    document, _ = load_checked_suite(settings, suite)
    assert document["expectations"]


@pytest.mark.parametrize(
    ("expectation", "expected"),
    [
        (
            {**GOOD, "type": "expect_colum_values_to_not_be_null"},
            "expectation 1 (expect_colum_values_to_not_be_null): field 'type': unknown "
            "expectation type 'expect_colum_values_to_not_be_null'",
        ),
        (
            {**GOOD, "severity": "warn"},
            "expectation 1 (expect_column_values_to_not_be_null): field 'severity': 'warn' is "
            "not one of critical, warning, info",
        ),
        (
            {**GOOD, "kwargs": {"column": "a", "mostli": 0.9}},
            "expectation 1 (expect_column_values_to_not_be_null): field 'kwargs.mostli': extra "
            "fields not permitted",
        ),
        (
            {**GOOD, "kwargs": {}},
            "expectation 1 (expect_column_values_to_not_be_null): field 'kwargs.column': field "
            "required",
        ),
        (
            {**GOOD, "kwargs": {"column": "a", "mostly": 2}},
            "expectation 1 (expect_column_values_to_not_be_null): field 'kwargs.mostly': ensure "
            "this value is less than or equal to 1.0",
        ),
        (
            {**GOOD, "kwarg": {"column": "a"}},
            "expectation 1 (expect_column_values_to_not_be_null): field 'kwarg': unknown field",
        ),
        ({"kwargs": {"column": "a"}}, "expectation 1: field 'type': missing or not a string"),
        ("expect_column_values_to_not_be_null", "expectation 1: must be an object"),
        (
            {**GOOD, "kwargs": ["a"]},
            "expectation 1 (expect_column_values_to_not_be_null): field 'kwargs': must be an "
            "object, got ['a']",
        ),
    ],
    ids=[
        "unknown-type",
        "bad-severity",
        "unknown-argument",
        "missing-argument",
        "out-of-range-argument",
        "unknown-key",
        "no-type",
        "not-an-object",
        "kwargs-not-object",
    ],
)
def test_each_invalid_expectation_names_file_index_and_field(expectation, expected: str) -> None:
    with pytest.raises(SuiteError) as error:
        check_suite({"name": "s", "expectations": [GOOD, expectation]}, PATH)
    assert str(error.value).startswith(f"invalid expectation suite {PATH}: {expected}")


def test_every_problem_is_listed_one_per_line() -> None:
    bad = [{**GOOD, "severity": "warn"}, {**GOOD, "type": "expect_nothing"}]
    with pytest.raises(SuiteError) as error:
        check_suite({"name": "s", "expectations": bad, "expectation": []}, PATH)
    lines = str(error.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"invalid expectation suite {PATH}: ") for line in lines)
    assert "field 'expectation': unknown field" in lines[0]


def test_run_suite_refuses_a_suite_gx_would_shorten() -> None:
    """The run-time guard: GX drops an expectation it cannot build; we refuse instead."""
    document = {"name": "s", "expectations": [GOOD, {"type": "expect_nothing", "kwargs": {}}]}
    with pytest.raises(SuiteError, match="Great Expectations kept 1 of 2 expectations"):
        run_suite(pd.DataFrame({"a": [1, 2]}), document)


def test_load_suite_json_refuses_a_document_without_expectations(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"expectation": []}))
    settings = replace(Settings.from_env(), expectations_dir=tmp_path)
    with pytest.raises(SuiteError, match="must be an object with an 'expectations' list"):
        load_suite_json(settings, "s")

"""Request bodies of ``POST /predict/<name>``, checked against the served model's signature (pure).

Three shapes are accepted, so clients of ``mlflow models serve`` can switch without changes:

- ``{"records": [{"col": value, ...}, ...]}`` (ours);
- ``{"dataframe_records": [{...}, ...]}`` (MLflow's records);
- ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (MLflow's split).

Every problem is a :class:`RequestError` whose message names the record and field, e.g.
``records[2].tenure_months: expected a number, got 'abc'``; the app answers it with 422.
``null`` is accepted for any column: the trained pipelines impute missing values.
Columns the signature does not name are ignored (the id column among them), as MLflow does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from trainyard.core.errors import DeterministicError

#: MLflow ColSpec types, grouped by what a JSON value must be to fit them.
_NUMBER_TYPES = frozenset({"double", "float"})
_INTEGER_TYPES = frozenset({"long", "integer"})
Kind = Literal["number", "integer", "string", "boolean", "any"]


class RequestError(DeterministicError):
    """A request body the server refuses; ``str(error)`` is the one line sent back."""


@dataclass(frozen=True)
class Column:
    """One input column of a model signature."""

    name: str
    kind: Kind
    required: bool = True


@dataclass(frozen=True)
class ParsedRequest:
    """A checked request: the feature values per record and each record's id (or None)."""

    records: list[dict[str, Any]]
    ids: list[str | None]


def columns_from_signature(input_schema: Any) -> tuple[Column, ...]:
    """The columns of an MLflow input schema (``ModelSignature.inputs``).

    Args:
        input_schema: An ``mlflow.types.Schema`` of named columns.

    Returns:
        One :class:`Column` per input, in the schema's order.

    Raises:
        ValueError: The schema has unnamed (tensor) inputs, which this server does not serve.
    """
    columns = []
    for spec in input_schema.inputs:
        if not getattr(spec, "name", None):
            raise ValueError("the model signature has unnamed inputs; only named columns serve")
        type_name = str(getattr(spec.type, "name", spec.type)).lower()
        kind: Kind = (
            "number"
            if type_name in _NUMBER_TYPES
            else "integer"
            if type_name in _INTEGER_TYPES
            else "string"
            if type_name == "string"
            else "boolean"
            if type_name == "boolean"
            else "any"
        )
        columns.append(Column(spec.name, kind, bool(getattr(spec, "required", True))))
    return tuple(columns)


def _check_value(kind: Kind, value: Any) -> str | None:
    """Why ``value`` does not fit a column of ``kind`` (None when it fits)."""
    if value is None or kind == "any":
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        return None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        return None
    if kind == "string":
        return None if isinstance(value, str) else "expected a string"
    return None if isinstance(value, bool) else "expected true or false"


def _records_of(payload: Any) -> tuple[str, list[Any]]:
    """The list of records in a decoded body and the name to report them under."""
    if isinstance(payload, dict):
        for key in ("records", "dataframe_records"):
            if key in payload:
                records = payload[key]
                if not isinstance(records, list):
                    raise RequestError(f"{key}: expected a list of objects")
                return key, records
        if "dataframe_split" in payload:
            return "dataframe_split", _split_to_records(payload["dataframe_split"])
    raise RequestError(
        'body: expected {"records": [...]}, {"dataframe_records": [...]} or '
        '{"dataframe_split": {"columns": [...], "data": [...]}}'
    )


def _split_to_records(split: Any) -> list[Any]:
    if not isinstance(split, dict):
        raise RequestError("dataframe_split: expected an object with columns and data")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("dataframe_split.columns: expected a list of column names")
    if not isinstance(data, list):
        raise RequestError("dataframe_split.data: expected a list of rows")
    records = []
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(
                f"dataframe_split.data[{index}]: expected a list of {len(columns)} values"
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


def parse_request(
    body: bytes, columns: tuple[Column, ...], id_column: str | None = None
) -> ParsedRequest:
    """Decode a request body and check every record against the model's columns.

    Args:
        body: The raw request body (JSON).
        columns: The model's input columns (:func:`columns_from_signature`).
        id_column: The spec's id column: its value, when a record has one, becomes the row id
            of the prediction log.

    Returns:
        The records reduced to the model's columns (missing optional ones as None), and ids.

    Raises:
        RequestError: Not JSON, not one of the accepted shapes, no records, or a record with a
            missing required field or a value of the wrong type (the first problem found).
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"body: not valid JSON ({error})") from None
    where, records = _records_of(payload)
    if not records:
        raise RequestError(f"{where}: no records to predict")
    parsed, ids = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"{where}[{index}]: expected an object of column values")
        row = {}
        for column in columns:
            if column.name not in record:
                if column.required:
                    raise RequestError(f"{where}[{index}]: missing field {column.name!r}")
                row[column.name] = None
                continue
            value = record[column.name]
            problem = _check_value(column.kind, value)
            if problem is not None:
                raise RequestError(f"{where}[{index}].{column.name}: {problem}, got {value!r:.60}")
            row[column.name] = value
        parsed.append(row)
        identity = record.get(id_column) if id_column else None
        ids.append(None if identity is None else str(identity))
    return ParsedRequest(parsed, ids)

"""Fixtures to run DAGs with ``dag.test()`` against the session's real services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import DagRunResult, run_dag_in_process


@pytest.fixture(scope="session")
def run_dag(stack: Any, airflow_db: None) -> Callable[[str, dict[str, Any]], DagRunResult]:
    """Run a DAG from the DAGs folder in-process and return what happened."""
    return run_dag_in_process

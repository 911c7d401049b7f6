"""Test session: a throw-away AIRFLOW_HOME and pipelines folder, and the real services.

Airflow reads its configuration when first imported, so the environment is set in
``pytest_configure``, before any test module is collected. Services (SeaweedFS S3, the MLflow
tracking server, an Airflow metadata DB) start lazily, once per session, on free ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import PIPELINES_DIR, REPO, SESSION_DIR


def pytest_configure(config: pytest.Config) -> None:
    """Point Airflow and trainyard at session-private folders before anything imports them."""
    PIPELINES_DIR.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "include" / "pipelines", REPO / "tests" / "pipelines"):
        for spec in source.glob("*.yaml"):
            shutil.copy(spec, PIPELINES_DIR / spec.name)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(SESSION_DIR / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "TRAINYARD_PIPELINES_DIR": str(PIPELINES_DIR),
            "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            # The services share a loaded 2-core machine with the tests (a cold MLflow worker
            # has taken over 30 s to answer): longer client bounds than the shipped 30 s, so
            # that only the fault tests, which set their own, see a service as unavailable.
            "TRAINYARD_SERVICE_TIMEOUT": "120",
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests marked ``last_in_module`` after the other tests of their module.

    Tests run in a random order (pytest-randomly shuffles before this hook runs) and must not
    depend on it. The one declared exception: a test that consumes its module's shared fixture
    (the production shape's teardown test stops the stack the other tests use).
    """
    first_seen: dict[Path, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.path, index)
    items.sort(
        key=lambda item: (
            first_seen[item.path],
            item.get_closest_marker("last_in_module") is not None,
        )
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """SeaweedFS (S3) and an MLflow tracking server on free ports, for the whole session."""
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    services = Stack(state_dir=SESSION_DIR / "stack", ports=Ports.free())
    try:
        services.up(airflow=False)
        os.environ.update(services.client_env())
        yield services
    finally:
        services.down()


@pytest.fixture(scope="session")
def settings(stack: Any) -> Any:
    """Settings read from the environment the stack exported."""
    from trainyard.core.settings import Settings

    return Settings.from_env()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
